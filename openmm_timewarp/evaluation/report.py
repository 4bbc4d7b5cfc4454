"""The benchmark's Markdown summary and the machine and model records of its JSON report."""

from __future__ import annotations

import os
import platform as host
from pathlib import Path

import openmm

from openmm_timewarp.evaluation.comparisons import state_population_deviations
from openmm_timewarp.evaluation.settings import EXPLORATION, MD_PRACTICAL, TIMEWARP


def processor_name() -> str:
    """The CPU's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return host.processor() or host.machine()


def machine_record(platform: str) -> dict:
    """The machine a measurement ran on: host, CPU, OpenMM and the OpenMM platform used."""
    return {
        "host": host.node(),
        "processor": processor_name(),
        "cpu_count": os.cpu_count(),
        "openmm": openmm.__version__,
        "platform": platform,
    }


def model_summary(model: str | os.PathLike | None) -> dict | None:
    if model is None:
        return None
    from openmm_timewarp.models.contract import load_metadata, resolve_model_path

    metadata = load_metadata(model)
    return {
        "path": str(resolve_model_path(model)),
        "name": metadata.name,
        "family": metadata.family,
        "tau_ps": metadata.tau_ps,
        "training": metadata.training,
    }


def _format(value: float | None, error: float | None = None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if error is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {error:.2g}"


def _marks(record: dict, missed: bool) -> str:
    """``*``: the sampler missed a state; ``†``: Sokal's estimate is not reliable."""
    marks = ("*" if missed else "") + ("" if record.get("reliable", True) else "†")
    return f" {marks}" if marks else ""


def markdown_summary(report: dict) -> str:
    """The Markdown summary of a report: one table per aspect, the ratios and the targets."""
    samplers = report["samplers"]
    lines = [
        f"# Benchmark: {report['peptide']['sequence']} ({report['peptide']['termini']}), "
        f"{report['date']}",
        "",
        f"Machine: {report['machine']['processor']}, {report['machine']['cpu_count']} CPUs, "
        f"OpenMM {report['machine']['openmm']}, platform {report['machine']['platform']}. "
        f"Budget {report['settings']['budget_s']:g} s per sampler over "
        f"{report['settings']['num_starts']} start(s). Reference: "
        f"{report['reference']['length_ns']:.3g} ns of MD ({report['reference']['source']}).",
        "",
        "| sampler | wall s | frames | acceptance | ESS/s TIC0 | ESS/s slowest dihedral "
        "| all states found (s) | JSD Ramachandran | JSD TIC | phi > 0 population |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in samplers.items():
        slow = result["ess"][result["slowest_dihedral"]]
        tic0 = result["ess"]["tic0"]
        missed = len(result["states_visited"]) < len(report["reference"]["states_to_discover"])
        tic0_marks, slow_marks = _marks(tic0, missed), _marks(slow, False)
        lines.append(
            f"| {name} | {result['wall_s']:.1f} | {result['frames']} | "
            f"{_format(result.get('acceptance'))} | "
            f"{_format(tic0['ess_per_s'], tic0['ess_per_s_error'])}{tic0_marks} | "
            f"{_format(slow['ess_per_s'], slow['ess_per_s_error'])} "
            f"({result['slowest_dihedral']}){slow_marks} | "
            f"{_format(result['median_time_to_all_states_s'])} | "
            f"{result['jsd_ramachandran']:.3f} | {result['jsd_tic']:.3f} | "
            f"{_format(result['phi_positive']['population'], result['phi_positive']['error'])} |"
        )
    lines += [
        "",
        "\\* this sampler did not visit every state, so its ESS misses the slowest process (for "
        "TIC0, which describes that process, the value measures fast motion within one state).",
        "† Sokal's window did not close within the run, or the run is shorter than 50 integrated "
        "autocorrelation times (`reliable: false` in report.json): the ESS is an upper bound.",
        f"Reference first half vs second half, JSD Ramachandran: "
        f"{report['reference']['jsd_ramachandran_halves']:.3f} (finite-sample floor).",
    ]
    if EXPLORATION in samplers:
        lines.append(
            f"{EXPLORATION} is not a Boltzmann sampler: its ESS, populations and divergences are "
            "shown for completeness, its use is discovery."
        )
    lines.append("")
    for name in (TIMEWARP, EXPLORATION):
        if name in samplers:
            per_start = ", ".join(f"{a:.3g}" for a in samplers[name]["acceptance_per_chain"])
            lines.append(f"- acceptance per start, {name}: {per_start}")
            for message in samplers[name].get("stuck_chains", []):
                lines.append(f"- warning, {name}: {message}")
    for pair, values in report["ratios"].items():
        formatted = ", ".join(f"{k} {_format(v['ratio'], v['error'])}" for k, v in values.items())
        lines.append(f"- ESS/s ratio {pair}: {formatted}")
    for key, record in report["fastest_md"].items():
        line = (
            f"- fastest MD baseline on {key}: {record['baseline']} (ESS/s "
            f"{_format(record['ess_per_s'], record['ess_per_s_error'])}"
            f"{'' if record['reliable'] else ', Sokal window not closed'})"
        )
        if "ratio" in record:
            line += (
                f"; {TIMEWARP} / {record['baseline']}: {_format(record['ratio'], record['error'])}"
            )
        lines.append(line)
    if "md_rates" in report:
        lines += _long_run_lines(report["md_rates"])
    for pair, record in report["discovery_speedups"].items():
        bound = ">= " if record.get("lower_bound") else ""
        value = "-" if record["speedup"] is None else f"{bound}{record['speedup']:.3g}x"
        lines.append(f"- discovery speed-up {pair}: {value} {record.get('note', '')}".rstrip())
    for name in (TIMEWARP, EXPLORATION):
        if name in samplers and "profile" in samplers[name]:
            p = samplers[name]["profile"]
            lines.append(
                f"- time profile {name}: model calls {p['model_s']:.1f} s "
                f"({p['model_call_s'] * 1e3:.2f} ms per call of {p['mean_batch']:.1f} proposals), "
                f"energies {p['energy_s']:.1f} s ({p['energy_per_proposal_s'] * 1e6:.0f} us per "
                f"proposal), other {p['other_s']:.1f} s of {p['wall_s']:.1f} s"
            )
    lines += ["", "Targets:", *_target_lines(report)]
    lines += ["", "Plots: " + ", ".join(f"![{k}]({v})" for k, v in report["files"].items()), ""]
    return "\n".join(lines)


def _long_run_lines(md_rates: dict) -> list[str]:
    """MD's rates from the long runs, and Timewarp's ratio to the fastest long-enough one."""
    minimum = md_rates["min_autocorrelation_times"]
    lines = [
        f"- MD rates from long runs ({md_rates['source']}; a rate counts where the run is at "
        f"least {minimum:g} integrated autocorrelation times long and its window closed):"
    ]
    for name, run in md_rates["runs"].items():
        where = "" if run["same_host"] else f", recorded on another host ({run['machine']['host']})"
        rates = "; ".join(
            f"{key} ESS/s {_format(rate['ess_per_s'], rate['ess_per_s_error'])}, tau_int "
            f"{rate['tau_int_ps']:.3g} ps, {rate['autocorrelation_times']:.3g} tau_int"
            f"{'' if rate['long_enough'] else ' (too short: not used)'}"
            for key, rate in run["ess"].items()
        )
        took = run.get("run_wall_s", run["wall_s"])
        speed = (
            f"{took / run['simulated_ns']:.3g} s per ns; rates at {run['wall_s_per_ns']:.3g} s "
            f"per ns, as {name} ran in this benchmark"
            if run.get("timing")
            else f"{run['wall_s_per_ns']:.3g} s per ns; not run in this benchmark, so its rates "
            "are at its own speed, taken at another time"
        )
        lines.append(
            f"  - {name}: {run['simulated_ns']:.3g} ns in {took:.0f} s ({speed}{where}): {rates}"
        )
    for key, record in md_rates["fastest"].items():
        if record["baseline"] is None:
            lines.append(f"- fastest long-run MD on {key}: {record['note']}")
            continue
        line = (
            f"- fastest long-run MD on {key}: {record['baseline']} (ESS/s "
            f"{_format(record['ess_per_s'], record['ess_per_s_error'])})"
        )
        if "ratio" in record:
            line += (
                f"; {TIMEWARP} / {record['baseline']} (long run): "
                f"{_format(record['ratio'], record['error'])}"
            )
        lines.append(line)
    return lines


def _ten_fold(against: str, ratio: dict) -> str:
    """The ESS/s target line: Timewarp at least 10x ``against``."""
    value = ratio["ratio"]
    verdict = "met" if value >= 10 else f"missed by a factor {10 / value:.3g}"
    return f"- Timewarp ESS/s >= 10x {against}: {_format(value, ratio['error'])}x, {verdict}"


def _target_lines(report: dict) -> list[str]:
    """Each target of the benchmark, met or missed and by what factor."""
    samplers, lines = report["samplers"], []
    ratios = report["ratios"].get(f"{TIMEWARP}/{MD_PRACTICAL}")
    if ratios:
        slowest = samplers[MD_PRACTICAL]["slowest_dihedral"]
        for key in ("tic0", slowest):
            if key in ratios:
                lines.append(_ten_fold(f"{MD_PRACTICAL} on {key}", ratios[key]))
    for key, record in report.get("md_rates", {}).get("fastest", {}).items():
        if "ratio" in record:
            against = f"the fastest long MD run ({record['baseline']}) on {key}"
            lines.append(_ten_fold(against, record))
    speedup = report["discovery_speedups"].get(f"{EXPLORATION}/{MD_PRACTICAL}")
    if speedup and speedup["speedup"] is not None:
        value = speedup["speedup"]
        bound = ">= " if speedup.get("lower_bound") else ""
        verdict = (
            "met"
            if value >= 100
            else (
                "not shown (MD never found every state: longer budget needed)"
                if speedup.get("lower_bound")
                else f"missed by a factor {100 / value:.3g}"
            )
        )
        lines.append(
            f"- exploration finds every state >= 100x sooner: {bound}{value:.3g}x, {verdict}"
        )
    if TIMEWARP in samplers:
        reference = report["reference"]["state_populations"]
        mh = samplers[TIMEWARP]["state_populations"]
        z = state_population_deviations(report)
        worst = max(z, key=lambda name: abs(z[name]))
        verdict = _agreement(z[worst])
        lines.append(
            f"- MH state populations vs the reference: largest deviation {z[worst]:+.2g} sigma "
            f"({worst}: {_format(mh[worst]['population'], mh[worst]['error'])} vs "
            f"{_format(reference[worst]['population'], reference[worst]['error'])}), {verdict}"
        )
        if "parallel_tempering" in report:
            lines += _tempering_lines(report)
        floor = report["reference"]["jsd_ramachandran_halves"]
        value = samplers[TIMEWARP]["jsd_ramachandran"]
        verdict = "within" if value <= floor else "above"
        lines.append(
            f"- MH Ramachandran agrees with the reference: JSD {value:.3f}, {verdict} the "
            f"reference's own half-to-half JSD {floor:.3f}"
        )
    return lines or ["- no Timewarp sampler in this run"]


def _agreement(deviation_sigma: float) -> str:
    return "agree within 2 sigma" if abs(deviation_sigma) <= 2 else "differ by more than 2 sigma"


def _tempering_lines(report: dict) -> list[str]:
    """MH against the parallel-tempering reference: basin and phi > 0 populations, Ramachandran."""
    tempering, mh = report["parallel_tempering"], report["samplers"][TIMEWARP]
    comparison = mh["vs_parallel_tempering"]
    deviations = comparison["state_population_deviation_sigma"]
    worst = max(deviations, key=lambda state: abs(deviations[state]))
    target, measured = tempering["phi_positive"], mh["phi_positive"]
    return [
        f"- MH phi > 0 population vs parallel tempering: "
        f"{_format(measured['population'], measured['error'])} vs "
        f"{_format(target['population'], target['error'])} "
        f"({comparison['phi_positive_deviation_sigma']:+.2g} sigma), "
        f"{_agreement(comparison['phi_positive_deviation_sigma'])}",
        f"- MH basin populations vs parallel tempering: largest deviation "
        f"{deviations[worst]:+.2g} sigma ({worst}); Ramachandran JSD "
        f"{comparison['jsd_ramachandran']:.3f} (tempering half to half "
        f"{tempering['jsd_ramachandran_halves']:.3f})",
    ]
