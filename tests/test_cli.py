"""The console script: `config` shows the resolved config; every bad input is one clear line and exit code 2."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess

import pytest
import torch
from helpers.servers import BIN, free_port
from helpers.training import TINY_RUN, run_overrides

# Lightning binds its log handler to stderr when first imported: import it now, not inside a test whose
# captured stderr is closed afterwards (later tests would print "--- Logging error ---").
import lightning_app.train  # noqa: F401
from dogbreeds.cli import main


def _train(capsys, *overrides) -> tuple[int, str]:
    code = main(["train", *overrides])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "model.lrr=0.1",
            "Could not override 'model.lrr': Key 'lrr' not in 'ModelConfig'; did you mean 'lr'?",
        ),
        ("model.finetune.stagez=2", "Key 'stagez' not in 'FinetuneConfig'; did you mean 'stages'?"),
        ("trainer.max_epoch=3", "Key 'max_epoch' not in 'TrainerConfig'; did you mean 'max_epochs'?"),
        (
            "data.batch_size=big",
            "data.batch_size=big: Value 'big' of type 'str' could not be converted to Integer",
        ),
        ("model=resnet5", "Could not find 'model/resnet5'"),
        (
            "model.optimizer=lamb",
            "model.optimizer=lamb: Invalid value 'lamb', expected one of [adamw, adam, sgd]",
        ),
        (
            "model.finetune.policy=top",
            "model.finetune.policy=top: Invalid value 'top', expected one of [full, head, last_n, staged]",
        ),
    ],
)
def test_config_mistakes_name_the_key(capsys, override, expected):
    code, err = _train(capsys, override)
    assert code == 2
    assert err.startswith("dogbreeds train: error: ")
    assert expected in err
    assert "+model" not in err  # Hydra's "use +key to append" hint would be silently ignored


@pytest.fixture
def train_args(sample_root, tmp_path):
    return tmp_path / "mlflow.db", run_overrides(TINY_RUN, sample_root, tmp_path)


def _mlflow_runs(db) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from runs").fetchone()[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.arch=resnet19", "model.arch='resnet19' is not a torchvision classification model"),
        ("model.weights=IMAGENET1K_V9", "model.weights='IMAGENET1K_V9' is not one of resnet18's weights"),
        ("model.weights=/nonexistent/resnet18.pth", "model.weights=/nonexistent/resnet18.pth is not a file"),
        (
            "sweep.metric=val_acc_top5",
            "sweep.metric=val_acc_top5: with 4 classes every epoch logs only val_loss, val_acc",
        ),
    ],
)
def test_bad_model_settings_fail_before_any_run_is_created(capsys, train_args, override, expected):
    db, args = train_args
    code, err = _train(capsys, *args, override)
    assert code == 2, err
    assert expected in err
    assert "Traceback" not in err
    assert _mlflow_runs(db) == 0  # nothing to clean up in MLflow after a typo


@pytest.mark.skipif(torch.cuda.is_available(), reason="the choice is possible on a machine with a GPU")
def test_a_gpu_choice_without_a_gpu_is_one_line_and_leaves_no_run(capsys, train_args):
    db, args = train_args
    code, err = _train(capsys, *args, "trainer=ddp")
    assert code == 2, err
    assert "trainer.accelerator=gpu with trainer.devices=-1, but this machine has 0 CUDA GPU(s)" in err
    assert "Traceback" not in err
    assert _mlflow_runs(db) == 0  # Lightning would refuse it only after the run was created


def test_a_bad_value_in_a_group_file_is_one_line_naming_file_and_key(capsys, tmp_path, monkeypatch):
    """A user's own group file (on Hydra's search path) is checked against the schema like an override."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("optimizer: lamb\n")
    code, err = _train(capsys, f"hydra.searchpath=[file://{tmp_path}]", "model=mine")
    assert code == 2
    assert err.strip() == (
        "dogbreeds train: error: In 'model/mine': model.optimizer: "
        "Invalid value 'lamb', expected one of [adamw, adam, sgd]"
    )


def test_a_bug_is_not_disguised_as_a_user_mistake(monkeypatch, capsys):
    """Only DogbreedsError is a one-line user error; any other exception keeps its traceback."""
    import dogbreeds.cli

    def broken(*args):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(dogbreeds.cli, "launch", broken)
    with pytest.raises(ValueError, match="an internal invariant broke"):
        main(["train"])
    assert "error:" not in capsys.readouterr().err


def test_offline_weights_are_one_actionable_line(capsys, train_args, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    _, args = train_args
    code, err = _train(capsys, *args, "model.weights=IMAGENET1K_V1")
    assert code == 2
    assert "could not fetch ResNet18_Weights.IMAGENET1K_V1" in err
    assert "set model.weights=/path/to/that/file.pth" in err


def test_bad_dataset_layouts(capsys, train_args, sample_root, tmp_path):
    _, args = train_args
    broken = tmp_path / "broken"
    shutil.copytree(sample_root, broken)
    shutil.rmtree(broken / "valid")
    code, err = _train(capsys, *args, f"data.root={broken}")
    assert code == 2 and f"missing split folder {broken / 'valid'}" in err

    code, err = _train(capsys, *args, f"data.root={tmp_path / 'nowhere'}")
    assert code == 2 and "does not exist" in err


def test_console_scripts_in_a_subprocess(tmp_path):
    out = tmp_path / "sample"
    done = subprocess.run(
        [str(BIN / "dogbreeds"), "sample-data", str(out), "--classes", "2", "--per-class", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote 12 images to {out}" in done.stdout
    assert len(list(out.rglob("*.jpg"))) == 12

    typo = subprocess.run(
        [str(BIN / "dogbreeds"), "train", f"data.root={out}", "model.lrr=0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert typo.returncode == 2
    assert (
        typo.stderr.strip()
        .splitlines()[-1]
        .startswith("dogbreeds train: error: Could not override 'model.lrr'")
    )
    assert not (tmp_path / "mlflow.db").exists()


def test_config_prints_the_resolved_config_that_other_verbs_would_use(capsys):
    from omegaconf import OmegaConf

    assert main(["config", "model=resnet50", "sweep.metric=val_loss", "sweep.direction=minimize"]) == 0
    printed = OmegaConf.create(capsys.readouterr().out)
    assert printed.model.arch == "resnet50" and printed.model.finetune.policy == "staged"
    assert (printed.sweep.metric, printed.sweep.direction) == ("val_loss", "minimize")
    assert main(["config", "model.optimizer=lamb"]) == 2
    assert "expected one of [adamw, adam, sgd]" in capsys.readouterr().err


def test_overrides_may_follow_a_flag_and_unknown_flags_are_refused(capsys):
    """``promote deploy=sagemaker --dry-run deploy.assume_absent=true`` as the README writes it."""
    assert main(["train", "trainer=demo", "--dry-run", "model.lrr=0.1"]) == 2
    assert "did you mean 'lr'?" in capsys.readouterr().err  # the override after the flag was read
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "model=resnet50", "--no-such-flag"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
