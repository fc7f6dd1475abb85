"""Pooling of side-by-side evaluations from several independent starts: the statistics one run cannot give.

Two 100 ps runs of a fluid from different states differ in their diffusion coefficients by more than
either's per-atom error bar (slow, collective motions), so a 10 % goal is judged over several starts,
with the standard errors taken from the scatter between them. Used by bench/ensemble.py.
"""
from __future__ import annotations

import numpy as np

from .structure import rdf_l1
from .trajectory import EvaluationError


def pool(starts: list[dict], iterations: list[dict] | None = None) -> dict:
    """Per run label that every start has: D per species (mean over starts, and relative to the truth's mean,
    a ratio estimator over paired starts), species temperatures and their spread, the RDF L1 of the
    start-averaged g(r) against the truth's (for the truth: first halves against second halves, its noise
    floor), mean drift and solver iterations.

    ``starts``: ``evaluate`` results (or their JSON) sharing one reference; ``iterations``: per start,
    {label: mean solver iterations}."""
    references = {s["reference"] for s in starts}
    if len(starts) < 2 or len(references) != 1 or None in references:
        raise EvaluationError(f"pooling needs at least two evaluations against one reference run (got {len(starts)}, "
                              f"references {sorted(map(str, references))}); evaluate every start with the same "
                              "reference label")
    truth = starts[0]["reference"]
    labels = [truth] + [label for label in starts[0]["runs"]
                        if label != truth and all(label in s["runs"] for s in starts)]
    truth_runs = [s["runs"][truth] for s in starts]
    out = {}
    for label in labels:
        runs = [s["runs"][label] for s in starts]
        species = list(runs[0]["temperature"]["per_species"])
        temperatures = {sp: float(np.mean([r["temperature"]["per_species"][sp]["mean_K"] for r in runs]))
                        for sp in species}
        all_k = float(np.mean([r["temperature"]["all_K"] for r in runs]))
        drifts = [r["energy"]["drift_meV_per_atom_ps"] for r in runs if r.get("energy")]
        counts = [(i or {}).get(label) for i in (iterations or [None] * len(starts))]
        entry = {"starts": len(runs), "temperature_K": temperatures,
                 "temperature_spread": (max(temperatures.values()) - min(temperatures.values())) / all_k,
                 "drift_meV_per_atom_ps": _mean_and_error(drifts),
                 "mean_iterations": None if None in counts else float(np.mean(counts)),
                 "diffusion_A2_per_ps": {sp: _mean_and_error([r["dynamics"]["diffusion"][sp]["msd_A2_per_ps"]
                                                              for r in runs]) for sp in species}}
        if label == truth:
            entry["rdf_l1_noise"] = {pair: rdf_l1(_mean_rdf(runs, pair, half=0), _mean_rdf(runs, pair, half=1))
                                     for pair in runs[0]["rdf"]["pairs"]}
        else:
            entry["rdf_l1"] = {pair: rdf_l1(_mean_rdf(runs, pair), _mean_rdf(truth_runs, pair))
                               for pair in runs[0]["rdf"]["pairs"]}
            # as evaluate.compare: no relative D where the truth does not diffuse (a solid)
            truth_d = out[truth]["diffusion_A2_per_ps"]  # the truth comes first
            entry["diffusion_relative"] = {sp: _ratio_minus_one(
                [r["dynamics"]["diffusion"][sp]["msd_A2_per_ps"] for r in runs],
                [r["dynamics"]["diffusion"][sp]["msd_A2_per_ps"] for r in truth_runs])
                if truth_d[sp]["mean"] > 3 * truth_d[sp]["stderr"] else None for sp in species}
        out[label] = entry
    return out


def _mean_and_error(values: list[float]) -> dict | None:
    if not values:
        return None
    values = np.asarray(values, dtype=float)
    stderr = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None  # one value: no scatter
    return {"mean": float(values.mean()), "stderr": stderr}


def _ratio_minus_one(run: list[float], truth: list[float]) -> dict:
    """mean(run) / mean(truth) - 1 and its standard error (delta method, paired starts)."""
    y, x = np.asarray(run, dtype=float), np.asarray(truth, dtype=float)
    ratio = y.mean() / x.mean()
    stderr = np.std(y - ratio * x, ddof=1) / np.sqrt(len(x)) / x.mean()
    return {"mean": float(ratio - 1), "stderr": float(stderr)}


def _mean_rdf(runs: list[dict], pair: str, half: int | None = None) -> np.ndarray:
    rdfs = [r["rdf"]["pairs"][pair] if half is None else r["rdf"]["halves"][pair][half] for r in runs]
    return np.mean(np.asarray(rdfs, dtype=float), axis=0)


def markdown_table(summary: dict) -> str:
    runs = summary["runs"]
    truth = runs[summary["truth"]]
    species = list(truth["temperature_K"])
    lines = [f"{summary['system']}: {summary['n_atoms']} atoms, {summary['condition']}, "
             f"{len(summary['segments'])} starts x {summary['time_ps']:g} ps; truth's RDF noise floor (halves): "
             + ", ".join(f"{p} {v:.3f}" for p, v in truth["rdf_l1_noise"].items()), "",
             "| run | drift [meV/atom/ps] | T " + " / ".join(species) + " [K] | T spread | RDF L1 (max pair) | D "
             + " / ".join(species) + " vs truth | iterations |", "|---|---|---|---|---|---|---|"]
    for label, run in runs.items():
        drift = run["drift_meV_per_atom_ps"]
        relative = run.get("diffusion_relative")
        lines.append("| " + " | ".join([
            label,
            "-" if drift is None else f"{drift['mean']:.2g}" + ("" if drift["stderr"] is None
                                                                 else f" ± {drift['stderr']:.1g}"),
            " / ".join(f"{run['temperature_K'][sp]:.2f}" for sp in species),
            f"{100 * run['temperature_spread']:.2f} %",
            f"{max(run['rdf_l1'].values()):.3f}" if "rdf_l1" in run else "-",
            " / ".join("n/a" if relative[sp] is None else
                       f"{100 * relative[sp]['mean']:+.1f} ± {100 * relative[sp]['stderr']:.1f} %" for sp in species)
            if relative else " / ".join(f"{run['diffusion_A2_per_ps'][sp]['mean']:.3f} Å²/ps" for sp in species),
            "-" if run["mean_iterations"] is None else f"{run['mean_iterations']:.2f}"]) + " |")
    return "\n".join(lines)
