"""Candidate against the current ``@champion``: both packages scored on the same split by the same code.

The gate (``deploy.gate``) proves a package reproduces its own run; this proves it is not worse than
what serves now. Both accuracies come from the same scorer (``deploy.gate_stack``: in-process or the image's
stack) over the validation split of this promote's ``data`` config, so runs that recorded their metrics on other data or other code are
compared fairly. The champion's package is the ``model.tar.gz`` attached to its model version (what
was actually deployed); versions promoted before packages were attached are rebuilt from their run.

After registration the candidate's version gets the package attached (``packages/<sha256>/`` in the
artifacts of its run) and the gate's figures as tags, so the registry says why each version serves.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient

from deploy import gate, registry
from deploy.packaging.builder import build_package
from lightning_app.tracking import no_artifact_progress_bar

PACKAGE_TAG = "dogbreeds.package"  # artifact path of the attached model.tar.gz in the version's run
GATE_TAG_PREFIX = "dogbreeds.gate."


class WorseThanChampion(gate.PromotionRefused):
    """The candidate scores below ``@champion`` by more than the tolerance; the champion stays.

    Carries the champion's package so a caller (``make demo``) can keep serving it."""

    def __init__(self, message: str, champion: ChampionScore):
        super().__init__(message)
        self.champion = champion


@dataclass(frozen=True)
class ChampionScore:
    version: str
    run_id: str
    val_acc: float
    tarball: Path


def champion_package(client: MlflowClient, version, dest: Path) -> Path:
    """The champion's attached ``model.tar.gz``, else the package rebuilt from its run, at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    attached = version.tags.get(PACKAGE_TAG)
    if not attached:
        return build_package(version.run_id, dest, client.tracking_uri, model_version=version.run_id)
    with tempfile.TemporaryDirectory(prefix="dogbreeds-champion-") as tmp, no_artifact_progress_bar():
        shutil.copyfile(client.download_artifacts(version.run_id, attached, tmp), dest)
    return dest


def score_champion(
    client: MlflowClient, model_name: str, samples, workdir: Path, candidate_run_id: str, score
) -> ChampionScore | None:
    """The current champion's val accuracy on ``samples``; None when there is no champion yet, or when
    the candidate is the champion's own run (re-promoting it: nothing to compare with)."""
    version = registry.champion_version(client, model_name)
    if version is None or version.run_id == candidate_run_id:
        return None
    tarball = champion_package(client, version, workdir / version.run_id / "model.tar.gz")
    return ChampionScore(str(version.version), version.run_id, score(tarball, samples), tarball)


def is_worse(candidate: gate.GateResult, champion: ChampionScore | None) -> bool:
    return champion is not None and candidate.reproduced < champion.val_acc - candidate.tolerance


def compare(candidate: gate.GateResult, champion: ChampionScore | None, force: bool) -> str:
    """A line saying how the candidate compares; raises ``WorseThanChampion`` unless ``force``."""
    if champion is None:
        return "no other @champion to compare with"
    against = (
        f"candidate val_acc={candidate.reproduced:.4f} vs @champion (version {champion.version}, "
        f"run {champion.run_id}) val_acc={champion.val_acc:.4f} on the same {candidate.images} "
        f"validation images (tolerance {candidate.tolerance})"
    )
    if not is_worse(candidate, champion):
        return against
    if force:
        return f"{against}: worse, promoted anyway (--force)"
    raise WorseThanChampion(
        f"{against}: the candidate is worse, @champion stays; promote it anyway with --force",
        champion,
    )


def gate_tags(
    result: gate.GateResult, champion: ChampionScore | None, sha256: str, forced: bool, stack: dict[str, str]
) -> dict:
    """``stack``: which stack scored the packages and its torch/torchvision (``gate_stack.stack_tags``)."""
    return {
        f"{GATE_TAG_PREFIX}val_acc": f"{result.reproduced:.6f}",
        f"{GATE_TAG_PREFIX}recorded_val_acc": f"{result.recorded:.6f}",
        f"{GATE_TAG_PREFIX}champion_val_acc": "none" if champion is None else f"{champion.val_acc:.6f}",
        f"{GATE_TAG_PREFIX}champion_version": "none" if champion is None else champion.version,
        f"{GATE_TAG_PREFIX}images": str(result.images),
        f"{GATE_TAG_PREFIX}tolerance": str(result.tolerance),
        f"{GATE_TAG_PREFIX}forced": str(forced).lower(),
        f"{GATE_TAG_PREFIX}package_sha256": sha256,
        **{f"{GATE_TAG_PREFIX}{key}": value for key, value in stack.items()},
    }


def attach_package(
    client: MlflowClient, name: str, version: str, tarball: Path, sha256: str, tags: dict
) -> str:
    """Log the package with the version's run, tag the version with it and the gate; returns its path."""
    run_id = client.get_model_version(name, version).run_id
    folder = f"packages/{sha256}"
    client.log_artifact(run_id, str(tarball), folder)
    path = f"{folder}/{tarball.name}"
    for key, value in {**tags, PACKAGE_TAG: path}.items():
        client.set_model_version_tag(name, version, key, value)
    return path
