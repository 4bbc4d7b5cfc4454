"""The PNG plots: the benchmark's Ramachandran free energies, TIC0 free energy, autocorrelation
against wall-clock lag and discovery curves; the held-out evaluation's speed-ups per peptide."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openmm_timewarp.evaluation import metrics
from openmm_timewarp.evaluation.analysis import RAMACHANDRAN_BINS
from openmm_timewarp.evaluation.md_reference import Reference, reference_tics
from openmm_timewarp.optional import require


def write_plots(report: dict, data: dict, reference: Reference, output_dir: Path) -> dict:
    require("matplotlib").use("Agg")
    plt = require("matplotlib.pyplot")

    names = list(data)
    files = {}

    # Ramachandran free energies, reference first.
    reference_angles = [metrics.backbone_dihedrals(t) for t in reference.trajectories]
    panels = [("reference MD", reference_angles)] + [(n, data[n]["angles"]) for n in names]
    figure, axes = plt.subplots(
        1, len(panels), figsize=(3.2 * len(panels) + 1, 3.4), squeeze=False, layout="constrained"
    )
    for axis, (title, angles) in zip(axes[0], panels, strict=True):
        phi = np.degrees(np.concatenate([a[0].ravel() for a in angles]))
        psi = np.degrees(np.concatenate([a[1].ravel() for a in angles]))
        counts, xe, ye = np.histogram2d(phi, psi, bins=RAMACHANDRAN_BINS, range=[[-180, 180]] * 2)
        with np.errstate(divide="ignore"):
            free_energy = -np.log(counts / counts.sum())
        free_energy -= np.nanmin(free_energy[np.isfinite(free_energy)], initial=0.0)
        mesh = axis.pcolormesh(xe, ye, free_energy.T, cmap="viridis", vmin=0, vmax=8)
        axis.set(title=title, xlabel="phi (deg)", ylabel="psi (deg)", aspect="equal")
    figure.colorbar(mesh, ax=axes[0].tolist(), label="free energy (kT)")
    files["ramachandran"] = _save(figure, output_dir / "ramachandran.png")

    # Free energy along TIC0 with block-error bands.
    edges = np.linspace(*reference.tic_range[0], 41)
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for title, tics in [("reference MD", reference_tics(reference))] + [
        (n, data[n]["tics"]) for n in names
    ]:
        centers, free_energy, error = metrics.free_energy_profile([t[:, 0] for t in tics], edges)
        line = axis.plot(centers, free_energy, label=title)[0]
        axis.fill_between(
            centers, free_energy - error, free_energy + error, alpha=0.25, color=line.get_color()
        )
    axis.set(xlabel="TIC0", ylabel="free energy (kT)", ylim=(-0.5, 10))
    axis.legend(fontsize=7)
    figure.tight_layout()
    files["tic0_free_energy"] = _save(figure, output_dir / "tic0_free_energy.png")

    # Autocorrelation against wall-clock lag (the fair time axis) of TIC0 and of the cosine of
    # the dihedral that is slowest for the first sampler.
    slowest = report["samplers"][names[0]]["slowest_dihedral"]
    kind, residue = slowest[:3], int(slowest[3:])
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for name in names:
        tics, times = data[name]["tics"], data[name]["times"]
        spacing = data[name]["wall_s"] / sum(len(t) for t in tics)
        max_lag = min(map(len, times)) // 2
        dihedral = [np.cos(a[0 if kind == "phi" else 1][:, residue]) for a in data[name]["angles"]]
        for axis, series in zip(axes, ([t[:, 0] for t in tics], dihedral), strict=True):
            rho = metrics.autocorrelation_function(series, max_lag=max_lag)
            axis.plot(np.arange(1, len(rho)) * spacing, rho[1:], label=name)
    for axis, what in zip(axes, ("TIC0", f"cos {slowest}"), strict=True):
        axis.set(xscale="log", xlabel="lag (wall-clock s)", ylabel=f"autocorrelation of {what}")
        axis.axhline(0, color="grey", lw=0.5)
        axis.legend(fontsize=7)
    files["autocorrelation"] = _save(figure, output_dir / "autocorrelation.png")

    # Discovery curves (first chain of each sampler).
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    total = len(report["reference"]["states_to_discover"])
    for name in names:
        first = report["samplers"][name]["discovery"][0]["first_visit_s"]
        times, counts = metrics.discovery_curve(first)
        budget = report["samplers"][name]["wall_s"] / report["samplers"][name]["chains"]
        axis.step(
            np.append(np.maximum(times, 1e-4), budget),
            np.append(counts, counts[-1] if len(counts) else 0),
            where="post",
            label=name,
        )
    axis.axhline(total, color="grey", ls="--", lw=0.8)
    axis.set(xscale="log", xlabel="wall-clock s", ylabel="states discovered")
    axis.legend(fontsize=7)
    figure.tight_layout()
    files["discovery"] = _save(figure, output_dir / "discovery.png")
    plt.close("all")
    return files


def write_heldout_plot(results: list[dict], path: Path) -> str:
    """Timewarp's ESS/s over MD's per peptide, MD's slowest backbone dihedral and TIC0, with
    error bars on a log axis; ratios that are not trusted (MD's run too short, Timewarp's window
    open) drawn hollow. Returns the file name."""
    require("matplotlib").use("Agg")
    plt = require("matplotlib.pyplot")

    figure, axis = plt.subplots(figsize=(max(5.0, 0.45 * len(results) + 2.5), 3.8))
    positions = np.arange(len(results))
    for key, label, marker, shift, color in (
        ("slowest_dihedral", "MD's slowest backbone dihedral", "o", -0.12, "C0"),
        ("tic0", "TIC0", "s", 0.12, "C1"),
    ):
        ratios = [result["ratios"][key] for result in results]
        shown = [i for i, r in enumerate(ratios) if r["ratio"]]
        values = np.array([ratios[i]["ratio"] for i in shown])
        errors = np.array([ratios[i]["error"] for i in shown])
        # A log axis cannot show a bar below zero: the lower bar stops at a tenth of the value.
        lower = np.minimum(errors, 0.9 * values)
        trusted = np.array([ratios[i]["trusted"] for i in shown], dtype=bool)
        x = positions[shown] + shift
        axis.errorbar(x, values, yerr=[lower, errors], fmt="none", capsize=2, lw=0.8, color=color)
        axis.scatter(x[trusted], values[trusted], marker=marker, color=color, label=label)
        axis.scatter(
            x[~trusted], values[~trusted], marker=marker, facecolors="none", edgecolors=color
        )
        if trusted.any():
            axis.axhline(np.median(values[trusted]), color=color, ls=":", lw=0.8)
    axis.axhline(1.0, color="grey", lw=0.8)
    axis.set_xticks(positions, [result["sequence"] for result in results], rotation=90)
    axis.set(yscale="log", ylabel="ESS/s, Timewarp / MD")
    axis.set_title("held-out peptides (dotted: medians; hollow: not trusted)", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    name = _save(figure, path)
    plt.close(figure)
    return name


def _save(figure, path: Path) -> str:
    figure.savefig(path, dpi=110)
    return path.name
