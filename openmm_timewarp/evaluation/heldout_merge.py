"""One held-out table from several ``timewarp heldout`` folders of the same evaluation.

MD runs are continued in folders of their own (a larger ``--md-budget`` on some peptides), so a
table's rows can live in several folders. :func:`merge_heldout` takes each peptide's row from
the folder whose MD run is the longest, after checking that every folder ran the same
evaluation (model, termini, references and settings; only the MD budget may differ), and never
reads a result whose MD run has since been continued (its evaluation is unfinished there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from openmm_timewarp.evaluation import heldout_table
from openmm_timewarp.evaluation.heldout import (
    PLOT_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    TABLE_FILE,
    saved_md_wall_s,
)
from openmm_timewarp.evaluation.md_rates import RUN_FILE
from openmm_timewarp.evaluation.plots import write_heldout_plot
from openmm_timewarp.files import write_atomically, write_json_atomically

SOURCES_FILE = "sources.json"


def _read_request(folder: Path) -> dict:
    path = folder / REQUEST_FILE
    if not path.is_file():
        raise ValueError(f"{folder} is not a `timewarp heldout` folder (no {REQUEST_FILE})")
    request = json.loads(path.read_text())
    if not (
        isinstance(request, dict)
        and isinstance(request.get("peptides"), list)
        and isinstance(request.get("settings"), dict)
        and "termini" in request
        and "md_baseline" in request["settings"]
    ):
        raise ValueError(f"{path} is not a `timewarp heldout` request")
    return request


def _evaluation(request: dict) -> dict:
    """What must agree between folders: the request less its peptides and MD budget."""
    same = {key: value for key, value in request.items() if key != "peptides"}
    same["settings"] = {k: v for k, v in request["settings"].items() if k != "md_budget_s"}
    return same


def _differences(first: dict, other: dict, prefix: str = "") -> list[str]:
    """The keys (nested ones as ``settings.key``) whose values differ between two evaluations,
    a key present on one side only included."""
    keys: list[str] = []
    for key in sorted(first.keys() | other.keys()):
        mine, theirs = first.get(key), other.get(key)
        if isinstance(mine, dict) and isinstance(theirs, dict):
            keys += _differences(mine, theirs, f"{prefix}{key}.")
        elif mine != theirs:
            keys.append(f"{prefix}{key}")
    return keys


def _finished_result(folder: Path, sequence: str, termini: str, baseline: str) -> dict | None:
    """The peptide's result in ``folder``, or None where it has none or its MD run was continued
    after it (the rerun that evaluates it afresh did not finish)."""
    peptide = folder / f"{sequence}-{termini}"
    path = peptide / RESULT_FILE
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    run_file = peptide / "md" / baseline / RUN_FILE
    try:
        wall_s = float(result["md"]["wall_s"])
        if run_file.is_file() and saved_md_wall_s(run_file) != wall_s:
            return None
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} or its MD run.json is not a `timewarp heldout` record") from error
    return result


def merge_heldout(
    folders: Sequence[str | os.PathLike], output_dir: str | os.PathLike
) -> list[tuple[dict, Path]]:
    """Write ``table.md``, ``speedups.png`` and ``sources.json`` (each peptide's folder) to
    ``output_dir`` from the peptides of ``folders``; returns each row's result and folder.

    Peptides come in the order the folders' requests first name them; a peptide found in
    several folders takes the result of the longest MD run (the last folder given wins a tie).
    """
    folders = [Path(folder) for folder in folders]
    if not folders:
        raise ValueError("give at least one `timewarp heldout` folder")
    if Path(output_dir).resolve() in {folder.resolve() for folder in folders}:
        raise ValueError(f"{output_dir} is one of the folders merged: give another output folder")
    requests = [_read_request(folder) for folder in folders]
    first = _evaluation(requests[0])
    for folder, request in zip(folders[1:], requests[1:], strict=True):
        other = _evaluation(request)
        if other != first:
            keys = _differences(first, other)
            raise ValueError(
                f"{folder} ran another evaluation than {folders[0]} (differs in "
                f"{', '.join(keys) or 'its request'}): only folders of one evaluation (MD "
                "budgets aside) merge"
            )
    termini, baseline = first["termini"], first["settings"]["md_baseline"]
    order = list(dict.fromkeys(s for request in requests for s in request["peptides"]))
    rows: list[tuple[dict, Path]] = []
    for sequence in order:
        best: tuple[dict, Path] | None = None
        for folder in folders:
            result = _finished_result(folder, sequence, termini, baseline)
            if result is not None and (
                best is None or result["md"]["wall_s"] >= best[0]["md"]["wall_s"]
            ):
                best = (result, folder)
        if best is not None:
            rows.append(best)
    if not rows:
        raise ValueError(f"no finished peptide in {', '.join(map(str, folders))}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = [result for result, _ in rows]
    write_atomically(output_dir / TABLE_FILE, heldout_table.table(results) + "\n")
    write_heldout_plot(results, output_dir / PLOT_FILE)
    sources = {result["sequence"]: str(folder) for result, folder in rows}
    write_json_atomically(output_dir / SOURCES_FILE, sources)
    return rows
