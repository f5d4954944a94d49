"""Resume: an interrupted run continues from last.ckpt in the same MLflow run, and bad resumes fail clearly."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.servers import BIN
from helpers.training import FAST_OVERRIDES, run_overrides
from helpers.waiting import wait_for
from mlflow.tracking import MlflowClient

from lightning_app import resume
from lightning_app.train import train

RESUME_OVERRIDES = ["trainer.max_epochs=3", "data.image_size=32", "model.arch=mobilenet_v3_small"]


def _interrupted_run(make_cfg, run_id: str, status: str = resume.RUNNING, *overrides: str) -> Path:
    cfg = make_cfg(*overrides)
    checkpoint_dir = resume.checkpoint_dir_for(cfg, run_id)
    resume.start_state(checkpoint_dir, run_id, cfg)
    (checkpoint_dir / resume.LAST_CHECKPOINT).write_bytes(b"checkpoint")
    if status == resume.FINISHED:
        resume.mark_finished(checkpoint_dir)
    return checkpoint_dir


def test_picks_the_newest_unfinished_run_of_this_experiment(make_cfg):
    older = _interrupted_run(make_cfg, "older")
    last_checkpoint = older / resume.LAST_CHECKPOINT
    an_hour_ago = last_checkpoint.stat().st_mtime - 3600
    os.utime(last_checkpoint, (an_hour_ago, an_hour_ago))  # "newest" is by last.ckpt's modification time
    newest = _interrupted_run(make_cfg, "newest")
    _interrupted_run(make_cfg, "done", resume.FINISHED)
    _interrupted_run(make_cfg, "other-experiment", resume.RUNNING, "experiment_name=other")
    point = resume.find_resume_point(make_cfg("resume=true", "trainer.max_epochs=9", "data.num_workers=1"))
    assert (point.run_id, point.checkpoint) == ("newest", newest / "last.ckpt")


def test_nothing_to_resume_is_an_error_naming_where_it_looked(make_cfg):
    _interrupted_run(make_cfg, "done", resume.FINISHED)
    cfg = make_cfg("resume=true")
    with pytest.raises(
        resume.ResumeError, match=f"no interrupted run of experiment 'dogbreeds'.*{cfg.output_dir}"
    ):
        resume.find_resume_point(cfg)


def test_changed_hyperparameters_are_refused_by_name(make_cfg):
    _interrupted_run(make_cfg, "run1")
    with pytest.raises(resume.ResumeError, match=r"model.lr \(0.003 -> 0.1\).*seed \(42 -> 7\)"):
        resume.find_resume_point(make_cfg("resume=true", "model.lr=0.1", "seed=7"))


def test_fixed_checkpoint_dir_starts_fresh_when_empty_and_refuses_a_finished_run(make_cfg, tmp_path):
    fixed = tmp_path / "opt-ml-checkpoints"
    assert resume.find_resume_point(make_cfg("resume=true", f"checkpoint_dir={fixed}")) is None
    cfg = make_cfg(f"checkpoint_dir={fixed}")
    resume.start_state(fixed, "job-run", cfg)
    (fixed / resume.LAST_CHECKPOINT).write_bytes(b"checkpoint")
    assert resume.find_resume_point(make_cfg("resume=true", f"checkpoint_dir={fixed}")).run_id == "job-run"
    resume.mark_finished(fixed)
    assert not (fixed / resume.LAST_CHECKPOINT).exists()
    with pytest.raises(resume.ResumeError, match="already finished"):
        resume.find_resume_point(make_cfg("resume=true", f"checkpoint_dir={fixed}"))


def _kill_after_first_checkpoint(command: list[str], output_dir: Path, cwd: Path) -> Path:
    """Start training, SIGKILL it (no cleanup, like a lost spot instance) once last.ckpt exists."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def first_checkpoint() -> list[Path]:
        found = list(output_dir.glob("*/checkpoints/last.ckpt"))
        if not found and proc.poll() is not None:
            raise AssertionError(f"training ended before a checkpoint: {proc.stderr.read().decode()[-2000:]}")
        return found

    try:
        found = wait_for(first_checkpoint, 300, f"a last.ckpt under {output_dir}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return found[0].parent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_killed_run_resumes_in_the_same_mlflow_run_and_matches_an_uninterrupted_one(
    make_cfg, sample_root, tmp_path
):
    baseline = train(make_cfg(*RESUME_OVERRIDES, f"output_dir={tmp_path / 'baseline'}"))

    cfg = make_cfg(*RESUME_OVERRIDES)
    # The same overrides make_cfg composes, on the command line of a process we can kill.
    command = [
        str(BIN / "dogbreeds"),
        "train",
        *run_overrides(FAST_OVERRIDES, sample_root, tmp_path, *RESUME_OVERRIDES),
    ]
    checkpoint_dir = _kill_after_first_checkpoint(command, Path(cfg.output_dir), tmp_path)
    killed_at_epoch = torch.load(checkpoint_dir / "last.ckpt", weights_only=True)["epoch"]
    assert killed_at_epoch < 2, "the kill must land mid-training for this test to mean anything"
    interrupted_run_id = (checkpoint_dir.parent).name

    result = train(make_cfg(*RESUME_OVERRIDES, "resume=true"))

    assert result.run_id == interrupted_run_id
    client = MlflowClient(cfg.tracking_uri)
    val_steps = [m.step for m in client.get_metric_history(result.run_id, "val_acc")]
    assert len(val_steps) == len(set(val_steps)) == 3, "an epoch was trained twice"
    assert client.get_run(result.run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(result.run_id, "checkpoints")] == [
        f"checkpoints/{Path(result.best_checkpoint).name}"
    ]
    for name in ("val_loss", "val_acc", "train_loss", "test_acc"):
        assert result.metrics[name] == pytest.approx(baseline.metrics[name], abs=1e-4), name
    with pytest.raises(resume.ResumeError, match="no interrupted run"):
        resume.find_resume_point(make_cfg(*RESUME_OVERRIDES, "resume=true"))
    assert not os.path.exists(checkpoint_dir / "last.ckpt")  # finished: nothing left to continue
