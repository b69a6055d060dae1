"""Every option of every command has help text, listed under one spelling (the underscore
name); the hyphenated spellings still parse, and ``-m A B`` gives two models."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from pathlib import Path

import pytest
from cyclopts import Parameter

from sleapflow.cli import app as cli
from sleapflow.cli.app import app, main

COMMANDS = sorted(name for name in app if not name.startswith("-"))


def _parameters(command: str) -> dict[str, Parameter]:
    """Each option of ``command``: its own parameters, and the fields of a flattened
    (``Parameter(name="*")``) options dataclass, which is how the declared inference options
    reach a command."""
    func = app[command].default_command
    assert func is not None
    return _annotated(func, command)


def _annotated(obj: object, where: str) -> dict[str, Parameter]:
    hints = typing.get_type_hints(obj, include_extras=True)
    names = ([f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj)  # type: ignore[arg-type]
             else list(inspect.signature(obj).parameters))  # type: ignore[arg-type]
    out = {}
    for name in names:
        meta = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Parameter)]
        assert meta, f"{where} {name}: no Parameter"
        if meta[0].name == ("*",):
            out.update(_annotated(hints[name].__origin__, f"{where} {name}"))
        else:
            out[name] = meta[0]
    return out


def test_all_commands_are_covered() -> None:
    assert {"track", "eval", "graphs", "bench", "render", "info", "system", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command: str) -> None:
    missing = [name for name, p in _parameters(command).items() if not (p.help or "").strip()]
    assert not missing, f"sleapflow {command}: no help for {missing}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_one_spelling(command: str, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # no wrapped option names
    with pytest.raises(SystemExit):
        app([command, "--help"], exit_on_error=False)
    text = capsys.readouterr().out
    assert "--empty-" not in text
    # No hyphenated alias: every long option is one word or underscore-joined (``--no-`` prefixes
    # negate a flag and are the only hyphen).
    longs = set(re.findall(r"--[\w-]+", text))
    hyphenated = {o for o in longs if "-" in o[2:].removeprefix("no-")}
    assert not hyphenated, hyphenated
    for name, param in _parameters(command).items():
        if any(n.startswith("--") for n in (param.name or ())):
            assert any(n in text for n in param.name), name  # type: ignore[union-attr]


def test_enum_choices_and_defaults_are_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        app(["track", "--help"], exit_on_error=False)
    text = re.sub(r"[\s│]+", " ", capsys.readouterr().out)
    assert "[choices: fixed_window, local_queues]" in text
    assert "[choices: slp, analysis_h5, csv, nwb]" in text
    assert "[default: 0.2]" in text  # peak_threshold


def test_hyphenated_spellings_still_parse() -> None:
    assert cli.canonical_argv(["--batch-size", "2", "--peak-threshold=0.3", "--no-ensure-rgb",
                               "--not-an-option", "a-b"]) == \
        ["--batch_size", "2", "--peak_threshold=0.3", "--no-ensure_rgb", "--not-an-option", "a-b"]


def test_two_models_after_one_flag(assets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-m A B`` (as people type it for top-down) reads both models, not B as a batch size."""
    a = str(assets / "model_ckpts/minimal_instance_centroid")
    b = str(assets / "model_ckpts/minimal_instance_centered_instance")
    assert main(["graphs", "topdown", "-m", a, "-m", b, "--batch_size", "3"]) == 0
    separate = capsys.readouterr().out
    assert main(["graphs", "topdown", "-m", a, b, "--batch_size", "3"]) == 0
    assert capsys.readouterr().out == separate
    assert "instance_forward" in separate
