"""The command group: help in step with the commands' docstrings, a light --help, and --version."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from audit_middleware.cli import COMMANDS, main
from tests.conftest import ROOT

VERSION = version("opensearch-audit-middleware")


def first_paragraph(text: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    assert text, "every command has a docstring"
    return " ".join(text.strip().split("\n\n")[0].split())


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_help_line_is_the_commands_own_docstring(name: str) -> None:
    """COMMANDS carries, for each command, the first paragraph of that command's docstring."""
    module, help_line = COMMANDS[name]
    command = getattr(importlib.import_module(module), name)
    assert isinstance(command, click.Command)
    assert command.name == name
    assert help_line == first_paragraph(command.help)


def test_every_command_of_the_modules_is_listed() -> None:
    """No top-level command defined in the CLI modules is missing from COMMANDS (sub-commands of
    a group such as ``archive restore`` are the group's own)."""
    modules = [importlib.import_module(name) for name in {module for module, _ in COMMANDS.values()}]
    commands = [
        (module.__name__, attribute)
        for module in modules
        for attribute in vars(module).values()
        if isinstance(attribute, click.Command)
    ]
    grouped = {
        id(sub)
        for _, command in commands
        if isinstance(command, click.Group)
        for sub in command.commands.values()
    }
    defined = {(module_name, command.name) for module_name, command in commands if id(command) not in grouped}
    assert defined == {(module, name) for name, (module, _) in COMMANDS.items()}


def test_help_lists_every_command_with_its_help_line() -> None:
    """--help shows each command, in COMMANDS order, with its one-line help."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    text = one_line(result.output)
    assert first_paragraph(main.help) in text
    positions = []
    for name, (_, help_line) in COMMANDS.items():
        entry = f"{name} {help_line}"
        assert entry in text, entry
        positions.append(text.index(entry))
    assert positions == sorted(positions)


def test_each_command_answers_its_own_help() -> None:
    """A command named on the command line is found and shows its options."""
    for name in COMMANDS:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: main {name}" in result.output or f"Usage: audit-middleware {name}" in result.output


def test_an_unknown_command_is_a_usage_error() -> None:
    """A mistyped command exits 2 and says there is no such command."""
    result = CliRunner().invoke(main, ["serch"])
    assert result.exit_code == 2
    assert "No such command 'serch'" in result.output


def test_help_imports_no_store_query_or_client() -> None:
    """--help loads neither the commands' modules nor any store, query, sink or opensearch-py module."""
    script = """
import json, sys
from audit_middleware.cli import main
try:
    main(["--help"], prog_name="audit-middleware")
except SystemExit:
    pass
heavy = ("opensearchpy", "sqlite3", "audit_middleware.query", "audit_middleware.sinks",
         "audit_middleware.opensearch", "audit_middleware.sqlite", "audit_middleware.cli.read",
         "audit_middleware.cli.admin", "audit_middleware.reads")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))), file=sys.stderr)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "Commands:" in result.stdout
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []


def test_version_option() -> None:
    """--version prints the program name and the installed distribution's version."""
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"audit-middleware {VERSION}\n"


def test_python_dash_m_prints_the_version() -> None:
    """python -m audit_middleware --version runs the same command line."""
    result = subprocess.run(
        [sys.executable, "-m", "audit_middleware", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == f"audit-middleware {VERSION}\n"


def test_the_installed_script_prints_the_version() -> None:
    """The audit-middleware console script is installed and answers --version."""
    script = shutil.which("audit-middleware", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the console script is not installed beside this interpreter")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout == f"audit-middleware {VERSION}\n"
