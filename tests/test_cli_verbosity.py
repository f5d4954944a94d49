"""``-v``/``-q`` on every verb: checked on ``predict``, which logs INFO (the model), DEBUG (each forward pass)
and WARNING (a skipped file) lines through our loggers."""

from __future__ import annotations

import pytest

from dogbreeds.cli import build_parser, main


@pytest.fixture
def folder(tmp_path):
    from helpers.images import distinct_jpegs

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "dog.jpg").write_bytes(distinct_jpegs(1)[0])
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    return tmp_path / "images"


@pytest.mark.parametrize(
    ("flag", "shown", "hidden"),
    [
        ([], ["WARNING dogbreeds.cli: skipped"], ["DEBUG"]),
        (
            ["-v"],
            ["DEBUG deploy.batch_predict: forward pass", "DEBUG deploy.batch_predict: model", "WARNING"],
            [],
        ),
        (["-q"], ["WARNING dogbreeds.cli: skipped"], ["INFO", "DEBUG"]),
    ],
)
def test_verbosity(served_package, folder, tmp_path, capsys, flag, shown, hidden):
    out = tmp_path / "p.csv"
    assert main(["predict", *flag, str(served_package), str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 image(s) scored, 1 skipped" in captured.out  # the result is output, not a log line
    for text in shown:
        assert text in captured.err
    for text in hidden:
        assert text not in captured.err


def test_every_verb_takes_v_and_q():
    parser = build_parser()
    verbs = next(a for a in parser._subparsers._group_actions).choices
    for name, verb in verbs.items():
        flags = {option for action in verb._actions for option in action.option_strings}
        assert {"-v", "-q", "--verbose", "--quiet"} <= flags, name


def test_v_and_q_together_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["config", "-v", "-q"])
    assert "not allowed with argument" in capsys.readouterr().err
