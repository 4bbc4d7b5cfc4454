"""What an install into a user's environment relies on: the plugin's build versions checked at
import, optional packages behind extras with clear errors, the CLI's help, version and progress."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import openmm.version
import pytest
import torch

from openmm_timewarp import _built_against, build_check
from openmm_timewarp.cli import main, make_parser
from openmm_timewarp.optional import EXTRA_OF_MODULE, MissingExtraError, require
from openmm_timewarp.progress import progress_bar


def test_the_plugin_was_built_against_the_running_openmm_and_torch() -> None:
    assert _built_against.OPENMM_VERSION == openmm.version.short_version
    assert _built_against.TORCH_VERSION == torch.__version__
    build_check.check_built_against()


def test_another_torch_or_openmm_is_refused_with_a_rebuild_command(monkeypatch) -> None:
    monkeypatch.setattr(_built_against, "TORCH_VERSION", "2.99.0+cpu")
    with pytest.raises(ImportError, match=r"torch \(torch 2\.99\.0\+cpu at build time") as error:
        build_check.check_built_against()
    assert "pip install --no-build-isolation" in str(error.value)
    monkeypatch.setattr(_built_against, "TORCH_VERSION", torch.__version__)
    monkeypatch.setattr(_built_against, "OPENMM_VERSION", "7.7.0")
    with pytest.raises(ImportError, match="another OpenMM"):
        build_check.check_built_against()


def test_cpu_and_cuda_builds_of_one_release_match() -> None:
    built = {"torch": "2.13.0+cpu", "OpenMM": "8.6.1"}
    assert build_check.version_mismatches(built, {"torch": "2.13.0+cu130", "OpenMM": "8.6.1"}) == []
    assert build_check.version_mismatches(built, {"torch": "2.13.1", "OpenMM": "8.6.1"}) == [
        ("torch", "2.13.0+cpu", "2.13.1")
    ]


def test_a_missing_optional_package_names_its_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mdtraj", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'openmm-timewarp\[analysis\]'"):
        require("mdtraj")
    monkeypatch.undo()
    assert require("mdtraj").__name__ == "mdtraj"


def test_a_missing_dependency_of_an_installed_package_is_not_blamed_on_the_extra(
    monkeypatch, tmp_path
) -> None:
    (tmp_path / "timewarp_fake_extra.py").write_text("import timewarp_absent_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXTRA_OF_MODULE, "timewarp_fake_extra", "cli")
    with pytest.raises(ModuleNotFoundError) as error:
        require("timewarp_fake_extra")
    assert error.value.name == "timewarp_absent_dependency"
    assert not isinstance(error.value, MissingExtraError)


def test_the_core_needs_no_optional_package_and_the_cli_names_its_extra() -> None:
    """In a fresh interpreter where every optional package fails to import: the integrator
    works, and ``timewarp`` says which extra to install (exit 1, no traceback)."""
    hidden = sorted(EXTRA_OF_MODULE)
    script = f"""
import sys
for name in {hidden!r}:
    sys.modules[name] = None
import openmm_timewarp
from openmm_timewarp import TimewarpIntegrator
import openmm_timewarp.sampling.chains, openmm_timewarp.data.peptides, openmm_timewarp.training.loop
from openmm_timewarp.__main__ import main
sys.argv = ["timewarp", "--help"]
sys.exit(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr
    assert "pip install 'openmm-timewarp[cli]'" in result.stderr
    assert "Traceback" not in result.stderr


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                yield name, subparser
                yield from _subparsers(subparser)


def test_every_default_is_shown_in_help() -> None:
    parsers = [("timewarp", make_parser()), *_subparsers(make_parser())]
    assert {"reference", "dipeptides", "run", "analyze"} <= {name for name, _ in parsers}
    checked = 0
    for name, parser in parsers:
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            default = action.default
            if isinstance(default, (list, tuple)):
                default = " ".join(map(str, default))
            option_help = text[text.index(action.option_strings[-1]) :]
            assert str(default) in option_help, (name, action.option_strings)
            checked += 1
    assert checked > 50


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("openmm-timewarp 0.1.0") and f"torch {torch.__version__}" in out


def test_module_commands_are_timewarp_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["reference", "analyze", "--help"])
    assert exit_info.value.code == 0
    assert "usage: timewarp reference analyze" in capsys.readouterr().out


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_plain_lines_in_a_log() -> None:
    log, terminal = _Log(), _Terminal()
    for stream in (log, terminal):
        with progress_bar(total=3, desc="work", stream=stream) as bar:
            for _ in range(3):
                bar.update(1)
    assert "\r" in terminal.getvalue()
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("work:") and lines[-1].startswith("work: 100%")
    silent = _Log()
    with progress_bar(total=3, stream=silent, enabled=False) as bar:
        bar.update(3)
    assert silent.getvalue() == ""
