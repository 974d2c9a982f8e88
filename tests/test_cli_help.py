"""Every help text a person reads in ``onestop --help`` and ``onestop <command> --help`` is Vietnamese first, then
English: "<tiếng Việt> / <English>" (the style of ``onestop report``, ``at-risk``, ``reconcile`` and ``import``).

The texts are collected from the click command tree typer builds, so a new command, option or argument is checked
as soon as it exists; each text is its own test case, named by where a person reads it.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from streams.tools.cli import app

SEPARATOR = " / "

# typer builds its tree from the click it ships (typer._click), so the walk goes by click's attributes
# (param_type_name, commands) rather than isinstance checks against an installed click.


def _param_name(param) -> str:
    if param.param_type_name == "argument":
        return (param.name or "?").upper()
    return max(param.opts, key=len) if param.opts else (param.name or "?")


def _is_click_help(param) -> bool:
    return param.param_type_name == "option" and "--help" in param.opts


def _walk(cmd, path: str) -> list[tuple[str, str, str]]:
    """(path, kind, text) of the command, its options and arguments, then its sub-commands, recursively."""
    found = [(path, "command", cmd.help or "")]
    for param in cmd.params:
        if param.param_type_name not in ("option", "argument") or _is_click_help(param):
            continue
        text = getattr(param, "help", None)  # typer keeps an argument's help on the param too
        if text:
            found.append((f"{path} {_param_name(param)}", "param", text))
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):  # a group: recurse
        found += _walk(sub, f"{path} {name}")
    return found


ROOT = typer.main.get_command(app)
TEXTS = _walk(ROOT, "onestop")
COMMANDS = [path for path, kind, _ in TEXTS if kind == "command" and path != "onestop"]


def _case(path: str, kind: str, text: str):
    return pytest.param(text, id=path)


def _vietnamese(text: str) -> bool:
    return any(ord(c) > 127 for c in text)


def test_the_tree_is_walked():
    # the walk sees the sub-apps' commands and the shared Kafka options, not just the top level
    paths = {path for path, _, _ in TEXTS}
    assert {"onestop score", "onestop reference units", "onestop mixin generate", "onestop dashboards push",
            "onestop import dvcqg", "onestop replay --kafka-security-protocol", "onestop validate FILE"} <= paths
    assert not any(path.endswith("--help") for path in paths)


@pytest.mark.parametrize("text", [_case(*t) for t in TEXTS])
def test_help_text_is_vietnamese_then_english(text):
    assert text, "no help text"
    assert SEPARATOR in text, f"no {SEPARATOR!r} between the Vietnamese and the English: {text!r}"
    vi, _, en = text.partition(SEPARATOR)
    assert _vietnamese(vi), f"the part before {SEPARATOR!r} has no Vietnamese letter: {vi!r}"
    assert en.strip(), f"nothing after {SEPARATOR!r}: {text!r}"


@pytest.mark.parametrize("text", [pytest.param(text, id=path) for path, kind, text in TEXTS if kind == "command"])
def test_short_help_in_the_command_list_is_bilingual(text):
    # the command list shows the first paragraph only: it must be bilingual by itself
    first = text.split("\n\n")[0]
    assert SEPARATOR in first and _vietnamese(first.partition(SEPARATOR)[0]), first


@pytest.mark.parametrize("path", COMMANDS)
def test_help_renders(path):
    args = path.split()[1:]
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "Usage" in result.output


def test_top_level_help_renders():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for path in COMMANDS:
        if path.count(" ") == 1:
            assert path.split()[1] in result.output
