"""The ``timewarp`` command line: help everywhere, build, simulate + resume, info, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openmm_timewarp.cli import SUBCOMMANDS, main, make_parser


def subcommand_names() -> list[str]:
    parser = make_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return list(action.choices)


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    names = subcommand_names()
    assert {"build", "simulate", "info"} <= set(names) and len(names) == len(SUBCOMMANDS)
    for argv in [["--help"]] + [[name, "--help"] for name in names]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        assert "usage: timewarp" in capsys.readouterr().out


def test_build_writes_a_pdb_and_system(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdb, system = tmp_path / "ad.pdb", tmp_path / "ad.xml"
    assert (
        main(
            ["build", "A", "--phi", "-70", "--psi", "-40", "-o", str(pdb), "--system", str(system)]
        )
        == 0
    )
    assert "22 atoms" in capsys.readouterr().out
    assert (
        sum(
            line.startswith("ATOM") or line.startswith("HETATM")
            for line in pdb.read_text().splitlines()
        )
        == 22
    )
    assert "GBSAOBCForce" in system.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "AXA", "-o", "{tmp}/x.pdb"], "Unknown residue letter"),
        (["build", "", "-o", "{tmp}/x.pdb"], "empty"),
        (["build", "A", "-o", "{tmp}/blocker/x.pdb"], "Cannot write"),
        (["simulate", "A", "--length-ns", "0.001", "-o", "{tmp}/blocker/run"], "Cannot write"),
        (["simulate", "A", "--length-ns", "0.001", "--start", "nowhere", "-o", "{tmp}/r"], "basin"),
        (
            [
                "simulate",
                "A",
                "--length-ns",
                "0.001",
                "--frame-interval-ps",
                "0.0003",
                "-o",
                "{tmp}/r",
            ],
            "whole number",
        ),
        (["info", "{tmp}/missing"], "not a folder"),
    ],
)
def test_bad_input_exits_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder is expected")
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    assert message in capsys.readouterr().err


def test_simulate_resumes_and_info_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["simulate", "A", "--start", "beta", "--start=-70,-40", "--frame-interval-ps", "0.05"]
    common += [
        "--equilibration-ps",
        "0.2",
        "--checkpoint-interval-ps",
        "0.1",
        "--round-ns",
        "0.0001",
    ]
    common += ["--no-progress"]
    common += ["-o", str(tmp_path)]
    assert main([*common, "--length-ns", "0.0002"]) == 0
    assert main([*common, "--length-ns", "0.0004"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path), "--json", "--phi"]) == 0
    summaries = json.loads(capsys.readouterr().out)
    assert summaries[0]["phi_positive_fraction"] == [0.0]  # started in beta, 0.4 ps later
    assert [s["name"] for s in summaries] == ["00-beta", "01--70_-40"]
    assert [s["frames"] for s in summaries] == [8, 8]
    assert [s["seed"] for s in summaries] == [1, 2]
    assert summaries[0]["start"] == [-150.0, 150.0]
