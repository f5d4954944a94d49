"""Promote against the current @champion: a worse candidate is refused unless forced, a better one wins,
and each promoted version carries its package and the gate's figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers.servers import free_port
from helpers.tracking_store import copy_tracking_store
from mlflow import MlflowClient

from conf.loader import load_config
from deploy import gate
from deploy.champion import WorseThanChampion
from deploy.local_endpoint import background
from deploy.packaging.builder import build_package, package_sha256
from deploy.promote import promote
from dogbreeds.cli import main
from lightning_app import checkpoints
from lightning_app.tracking import CHECKPOINT_ARTIFACT, log_image_model


def unbalanced_copy(root: Path, folder: Path) -> Path:
    """The sample data with the first breed's validation images copied 4 more times: a split on which
    models that always answer one breed score very differently."""
    copy = folder / "data"
    shutil.copytree(root, copy)
    first = sorted((copy / "valid").iterdir())[0]
    for image in sorted(first.iterdir()):
        for n in range(4):
            shutil.copyfile(image, image.with_name(f"{image.stem}-copy{n}{image.suffix}"))
    return copy


def log_constant_run(
    client: MlflowClient, trained_run, breed: int, samples, folder: Path
) -> tuple[str, float]:
    """A FINISHED run next to the shared one whose head answers ``breed`` whatever the image. It records
    the val_acc its package really scores, so it passes the reproduction gate and only the comparison with
    the champion can stop it. (The shared run, trained for one epoch, is too close to chance for this.)"""
    checkpoint = checkpoints.read(trained_run.result.best_checkpoint)
    head = f"model.{checkpoint['dogbreeds']['head']}."
    for key, tensor in checkpoint["state_dict"].items():
        if key.startswith(head):
            checkpoint["state_dict"][key] = torch.zeros_like(tensor)
            if key.endswith("bias"):
                checkpoint["state_dict"][key][breed] = 10.0
    path = folder / f"breed{breed}" / "best.ckpt"
    path.parent.mkdir()
    torch.save(checkpoint, path)
    val_acc = gate.package_accuracy(build_package(path, path.with_name("model.tar.gz")), samples)

    experiment_id = client.get_run(trained_run.result.run_id).info.experiment_id
    run_id = client.create_run(experiment_id, tags={"mlflow.runName": f"always-{breed}"}).info.run_id
    client.log_artifact(run_id, str(path), CHECKPOINT_ARTIFACT)
    client.log_metric(run_id, "val_acc", val_acc, step=0)
    log_image_model(client, run_id, path, {})
    client.set_terminated(run_id)
    return run_id, val_acc


def version_of(client: MlflowClient, alias: str):
    return client.get_model_version_by_alias("dogbreeds", alias)


@pytest.mark.slow
def test_promote_keeps_a_better_champion_unless_forced(trained_run, tmp_path, capsys):
    overrides = [
        *trained_run.overrides,
        f"data.root={unbalanced_copy(Path(load_config(trained_run.overrides).data.root), tmp_path)}",
        f"tracking_uri={copy_tracking_store(trained_run.tracking_uri, tmp_path)}",
        f"output_dir={tmp_path / 'outputs'}",
        f"deploy.local_port={free_port()}",
    ]
    cfg = load_config(overrides)
    client = MlflowClient(cfg.tracking_uri)
    samples = gate.gate_samples(cfg.data)
    good, good_acc = log_constant_run(client, trained_run, 0, samples, tmp_path)  # the common breed
    worse, worse_acc = log_constant_run(client, trained_run, 1, samples, tmp_path)
    assert worse_acc < good_acc - cfg.deploy.gate_tolerance, (good_acc, worse_acc)
    quiet = lambda _: None  # noqa: E731

    def promote_run(run_id: str, **flags):
        chosen = cfg.copy()
        chosen.deploy.run_id = run_id
        return promote(chosen, echo=quiet, **flags)

    try:
        first = promote_run(worse)  # no champion yet: nothing to compare with
        assert first.champion is None and version_of(client, "champion").run_id == worse
        assert version_of(client, "champion").tags["dogbreeds.gate.champion_val_acc"] == "none"

        better = promote_run(good)  # better than the champion: promoted, the old one kept as @previous
        assert (better.champion.run_id, better.champion.val_acc) == (worse, pytest.approx(worse_acc))
        assert (version_of(client, "champion").run_id, version_of(client, "previous").run_id) == (good, worse)
        tags = version_of(client, "champion").tags
        sha256 = package_sha256(better.tarball)
        assert tags["dogbreeds.gate.val_acc"] == f"{good_acc:.6f}"
        assert tags["dogbreeds.gate.champion_val_acc"] == f"{worse_acc:.6f}"
        assert tags["dogbreeds.gate.package_sha256"] == sha256
        assert (tags["dogbreeds.gate.stack"], tags["dogbreeds.gate.forced"]) == ("local", "false")
        assert tags["dogbreeds.gate.torch"] == torch.__version__.split("+")[0]
        assert "dogbreeds.gate.torchvision" in tags
        attached = client.download_artifacts(good, tags["dogbreeds.package"], str(tmp_path / "attached"))
        assert Path(attached).read_bytes() == better.tarball.read_bytes()

        # worse than the champion: refused with both numbers, registry untouched; the champion was scored
        # from the package attached to its version
        with pytest.raises(WorseThanChampion, match=rf"val_acc={worse_acc:.4f} .* val_acc={good_acc:.4f}"):
            promote_run(worse)
        assert version_of(client, "champion").run_id == good
        assert background.read_state(cfg.output_dir)["run_id"] == good  # still serving the champion
        cli = [*overrides, f"deploy.run_id={worse}"]
        assert main(["promote", *cli]) == 2
        assert (
            "the candidate is worse, @champion stays; promote it anyway with --force"
            in capsys.readouterr().err
        )
        assert version_of(client, "champion").run_id == good

        assert main(["promote", "--force", *cli]) == 0  # forced: promoted, and the version says so
        forced = version_of(client, "champion")
        assert (forced.run_id, version_of(client, "previous").run_id) == (worse, good)
        assert forced.tags["dogbreeds.gate.forced"] == "true"
        assert forced.tags["dogbreeds.gate.champion_val_acc"] == f"{good_acc:.6f}"
    finally:
        background.stop(cfg.output_dir)
