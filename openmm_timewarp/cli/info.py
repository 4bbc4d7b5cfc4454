"""``timewarp info``: the trajectories of a data folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="summarise the trajectories in a data folder",
        description="List each trajectory of a data folder: start, frames committed, length.",
    )
    parser.add_argument(
        "--phi",
        action="store_true",
        help="also give the fraction of frames with phi > 0 (every residue's phi), the rare "
        "region of alanine dipeptide",
    )
    parser.add_argument("data", type=Path, help="data folder written by `timewarp simulate`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_info)


def _info(args: argparse.Namespace) -> int:
    from openmm_timewarp.data.datasets import list_trajectories

    trajectories = list_trajectories(args.data)
    summaries = [t.summary() for t in trajectories]
    if args.phi:
        for trajectory, summary in zip(trajectories, summaries, strict=True):
            phi, _ = trajectory.backbone_angles()
            summary["phi_positive_fraction"] = (phi > 0).mean(axis=0).tolist() if len(phi) else None
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    total_ns = 0.0
    for summary in summaries:
        total_ns += summary["length_ns"]
        phi_text = ""
        if summary.get("phi_positive_fraction") is not None:
            fractions = ", ".join(f"{f:.4f}" for f in summary["phi_positive_fraction"])
            phi_text = f", phi > 0 in {fractions} of frames"
        print(
            f"{summary['name']}: {summary['sequence']} ({summary['termini']}), start "
            f"{summary['start']}, {summary['frames']}/{summary['target_frames']} frames, "
            f"{summary['length_ns']:.3f} ns{phi_text}"
        )
    noun = "trajectory" if len(trajectories) == 1 else "trajectories"
    print(f"{len(trajectories)} {noun}, {total_ns:.3f} ns in all")
    return 0
