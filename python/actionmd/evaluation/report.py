"""Write an evaluation: results.json, PNG plots (matplotlib, Agg, no display needed) and report.md.

Figures are built with matplotlib.figure.Figure directly, so nothing depends on (or changes) the
pyplot backend of the calling process.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .side_by_side import GOALS, RDF_WITHIN_NOISE, WITHIN_SIGMA, against_noise, noise_verdict
from .trajectory import EvaluationError

COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]


def to_jsonable(value):
    """numpy arrays and scalars -> lists and floats; NaN and inf -> None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


#: Every file write_report may write: an earlier evaluation's are removed first, so none is left stale.
OUTPUT_FILES = ("report.md", "results.json", "energy.png", "temperature.png", "rdf.png", "vacf.png", "msd.png",
                "vdos.png")


def check_outdir(outdir) -> Path:
    """``outdir`` as a Path, refused early (before any work) when it exists but is not a folder."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise EvaluationError(f"-o {outdir}: exists and is not a folder; give a folder for the report (it is "
                              "created if missing)")
    return outdir


def write_report(results: dict, outdir) -> list[Path]:
    """Write report.md, results.json and the plots into ``outdir``; return their paths (report.md first).

    The folder's earlier evaluation files (:data:`OUTPUT_FILES`) are removed first; nothing else is touched."""
    outdir = check_outdir(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (outdir / name).unlink(missing_ok=True)
    plots = [p for p in (_energy_plot(results, outdir), _temperature_plot(results, outdir),
                         _per_key_plot(results, outdir, "rdf"), _per_key_plot(results, outdir, "vacf"),
                         _per_key_plot(results, outdir, "msd"), _per_key_plot(results, outdir, "vdos")) if p]
    data = outdir / "results.json"
    data.write_text(json.dumps(to_jsonable(results), indent=1))
    report = outdir / "report.md"
    report.write_text(markdown(results, plots))
    return [report, data, *plots]


# ---------------------------------------------------------------------- tables
def _fmt(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def _percent(value, spec: str) -> str:
    return "n/a" if value is None else f"{_fmt(100 * value, spec)} %"


def _mark(goal: dict) -> str:
    return {True: "met", False: "NOT met", None: "n/a"}[goal["met"]]


def summary_rows(results: dict) -> list[list[str]]:
    """One row per run: label, drift, fluctuation, T spread, RDF L1, diffusion error (with verdicts)."""
    rows = []
    for label, run in results["runs"].items():
        goals, energy = run["goals"], run["energy"]
        rows.append([
            label + (" (reference)" if label == results["reference"] else ""),
            f"{_fmt(energy and energy['drift_meV_per_atom_ps'], '.3g')} ({_mark(goals['energy_drift'])})",
            _fmt(energy and energy["fluctuation_meV_per_atom"], ".3g"),
            f"{_percent(run['temperature']['spread'], '.2f')} ± {_percent(run['temperature']['spread_stderr'], '.1g')} "
            f"({_mark(goals['temperature_spread'])})",
            f"{_fmt(goals['rdf_l1']['value'], '.3f')} ({_mark(goals['rdf_l1'])})",
            f"{_percent(goals['diffusion']['value'], '.1f')} ({_mark(goals['diffusion'])})",
        ])
    return rows


SUMMARY_HEADER = ["run", "drift [meV/atom/ps]", "fluct. [meV/atom]", "T spread", "RDF L1 (max pair)",
                  "|ΔD|/D_ref (max)"]


def text_table(results: dict) -> str:
    return _aligned([SUMMARY_HEADER, *summary_rows(results)])


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def verdict_rows(results: dict) -> list[list[str]]:
    """One row per run, judged against the reference's own noise (side_by_side.against_noise): drift against
    its absolute goal, per-species temperatures, RDF and diffusion as "within noise" or how far out."""
    ref = results["runs"][results["reference"]]
    rows = []
    for label, run in results["runs"].items():
        energy = run["energy"]
        drift = "n/a" if energy is None else (
            f"{energy['drift_meV_per_atom_ps']:+.3g}" + ("" if abs(energy["drift_meV_per_atom_ps"])
                                                       <= GOALS["energy_drift"]["threshold"] else " (over 0.1)"))
        temperatures = " / ".join(f"{t['mean_K']:.0f}" for t in run["temperature"]["per_species"].values())
        if label == results["reference"]:
            rows.append([f"{label} (truth)", drift, temperatures, "-", "-"])
            continue
        noise, versus = against_noise(run, ref), run["vs_reference"]
        rows.append([label, drift, f"{temperatures}: {noise_verdict(noise['temperature_sigma'])}",
                     f"{versus['rdf_l1_max']:.3f}: {noise_verdict(noise['rdf_l1_over_noise'], 'noise')}",
                     noise_verdict(noise["diffusion_sigma"])])
    return rows


def verdict_header(results: dict) -> list[str]:
    species = " / ".join(next(iter(results["runs"].values()))["temperature"]["per_species"])
    return ["run", "drift [meV/atom/ps]", f"T {species} [K] vs truth", "RDF L1 vs truth", "diffusion vs truth"]


def verdict_table(results: dict) -> str:
    """The table of verdict_rows, as aligned text."""
    return _aligned([verdict_header(results), *verdict_rows(results)])


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def markdown(results: dict, plots: list[Path]) -> str:
    s = results["settings"]
    parts = ["# actionmd evaluate", "",
             f"Reference: {results['reference'] or 'none'}. RDF up to {s['r_max_A']:.3g} Å in {s['rdf_bins']} bins; "
             f"diffusion fit window {s['fit_window_fs'][0] / 1000:.3g}-{s['fit_window_fs'][1] / 1000:.3g} ps. "
             "Definitions: docs/evaluation.md.", "", "## Goals", "",
             "\n".join(f"- {g['text']}" for g in GOALS.values()), "",
             _md_table(SUMMARY_HEADER, summary_rows(results)), ""]
    if results["reference"]:
        parts += ["## Against the reference's own noise", "",
                  f"Temperatures and diffusion within {WITHIN_SIGMA:g} sigma (sqrt(2) x the reference's standard "
                  "error), RDF within "
                  f"{RDF_WITHIN_NOISE:g} times the L1 distance between the reference's own two halves, are within noise "
                  "(docs/evaluation.md).", "",
                  _md_table(verdict_header(results), verdict_rows(results)), ""]
    if results["warnings"]:
        parts += ["## Warnings", "", "\n".join(f"- {w}" for w in results["warnings"]), ""]
    for label, run in results["runs"].items():
        parts += [f"## {label}", "", f"{run['source']}: {run['n_atoms']} atoms {run['species']}, {run['n_frames']} "
                  f"frames every {run['interval_fs']:g} fs ({run['duration_ps']:.4g} ps).", ""]
        if run["energy"]:
            e = run["energy"]
            parts += [f"Energy ({e['source']}): drift {e['drift_meV_per_atom_ps']:.3g} ± "
                      f"{e['drift_stderr_meV_per_atom_ps']:.2g} meV/atom/ps, fluctuation "
                      f"{e['fluctuation_meV_per_atom']:.3g} meV/atom, max |E - E0| "
                      f"{e['max_deviation_meV_per_atom']:.3g} meV/atom.", ""]
        t, dyn, versus = run["temperature"], run["dynamics"], run.get("vs_reference")
        rows = []
        for sp, ts in t["per_species"].items():
            d = dyn["diffusion"][sp]
            rows.append([sp, f"{ts['mean_K']:.2f} ± {ts['stderr_K']:.2f}",
                         " / ".join(f"{x:.1f}" for x in ts["per_direction_K"]),
                         f"{d['msd_A2_per_ps']:.4g} ± {d['msd_stderr_A2_per_ps']:.2g}",
                         f"{d['green_kubo_A2_per_ps']:.4g}", f"{dyn['vdos'][sp]['peak_THz']:.3g}",
                         _fmt(versus and versus["temperature_relative"][sp] * 100, "+.2f"),
                         _fmt(None if not versus or versus["diffusion_relative"][sp] is None
                              else versus["diffusion_relative"][sp] * 100, "+.1f"),
                         _fmt(versus and versus["vdos_l1"][sp], ".3f")])
        parts += [_md_table(["species", "T [K]", "T x / y / z [K]", "D (MSD) [Å²/ps]", "D (GK) [Å²/ps]",
                             "VDOS peak [THz]", "ΔT vs ref [%]", "ΔD vs ref [%]", "VDOS L1 vs ref"], rows), ""]
        if "water" in t and "internal_K" in t["water"]:
            w = t["water"]
            parts += [f"Water ({w['molecules']} molecules): centre-of-mass translation {w['translational_K']:.2f} ± "
                      f"{w['translational_stderr_K']:.2f} K, internal (rotation + vibration) {w['internal_K']:.2f} ± "
                      f"{w['internal_stderr_K']:.2f} K.", ""]
        if versus:
            parts += ["RDF L1 vs reference: " + ", ".join(f"{p} {v:.4f}" for p, v in versus["rdf_l1"].items()), ""]
        if "rdf_l1_noise" in run:
            parts += ["RDF L1 between the two halves of this run (noise floor): "
                      + ", ".join(f"{p} {v:.4f}" for p, v in run["rdf_l1_noise"].items()), ""]
    parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------- plots
def _styles(results: dict):
    """(label, colour, line style): the reference in black, dashed."""
    out, k = [], 0
    for label in results["runs"]:
        if label == results["reference"]:
            out.append((label, "black", "--"))
        else:
            out.append((label, COLOURS[k % len(COLOURS)], "-"))
            k += 1
    return out


def _energy_plot(results: dict, outdir: Path) -> Path | None:
    runs = results["runs"]
    if not any(run["energy"] for run in runs.values()):
        return None
    fig = Figure(figsize=(7, 4), constrained_layout=True)
    ax = fig.add_subplot()
    for label, colour, style in _styles(results):
        e = runs[label]["energy"]
        if e:
            ax.plot(e["time_ps"], 1000 * (e["total_eV_per_atom"] - e["total_eV_per_atom"][0]), style, color=colour,
                    lw=1, label=f"{label}: {e['drift_meV_per_atom_ps']:.3g} meV/atom/ps")
    ax.set(xlabel="time [ps]", ylabel="E_tot - E_tot(0) [meV/atom]", title="Total energy (reference potential)")
    ax.legend(fontsize=8)
    return _save(fig, outdir / "energy.png")


SPECIES_DASHES = ["-", ":", "-.", "--"] * 4
WATER_KEYS = {"H2O COM": "translational", "H2O internal": "internal"}


def _temperature_plot(results: dict, outdir: Path) -> Path:
    runs = results["runs"]
    styles = _styles(results)
    groups = list(next(iter(runs.values()))["temperature"]["per_species"])
    if any("internal_K" in run["temperature"].get("water", {}) for run in runs.values()):
        groups += ["H2O COM", "H2O internal"]
    fig = Figure(figsize=(10, 4), constrained_layout=True)
    bars, series = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    width = 0.8 / len(runs)
    for k, (label, colour, _) in enumerate(styles):
        t = runs[label]["temperature"]
        water = t.get("water", {})
        pairs = [(t["per_species"][g]["mean_K"], t["per_species"][g]["stderr_K"]) if g in t["per_species"] else
                 (water.get(f"{WATER_KEYS[g]}_K", np.nan), water.get(f"{WATER_KEYS[g]}_stderr_K", 0.0)) for g in groups]
        means, errors = zip(*pairs)
        bars.bar(np.arange(len(groups)) + (k - (len(runs) - 1) / 2) * width, means, width, yerr=errors,
                 color=colour, label=label)
        time_ps = np.arange(len(t["series_all_K"])) * runs[label]["interval_fs"] / 1000
        for (sp, ts), dash in zip(t["per_species"].items(), SPECIES_DASHES):
            series.plot(time_ps, ts["series_K"], dash, color=colour, lw=0.7, label=f"{label}: {sp}")
    low = min(min(s["mean_K"] for s in run["temperature"]["per_species"].values()) for run in runs.values())
    bars.set(xticks=np.arange(len(groups)), xticklabels=groups, ylabel="T [K]", ylim=(0.9 * low, None),
             title="Kinetic temperature (± block standard error)")
    bars.legend(fontsize=8)
    series.set(xlabel="time [ps]", ylabel="T [K]", title="Temperature per species")
    series.legend(fontsize=7)
    return _save(fig, outdir / "temperature.png")


PER_KEY = {  # what, x label, y label, title
    "rdf": ("r [Å]", "g(r)", "Radial distribution function"),
    "vacf": ("lag [ps]", "Z(τ) / Z(0)", "Velocity autocorrelation"),
    "msd": ("lag [ps]", "MSD [Å²]", "Mean-square displacement (fit window shaded)"),
    "vdos": ("ν [THz]", "S(ν) [1/THz]", "Vibrational density of states"),
}


def _curves(run: dict, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    dyn = run["dynamics"]
    lag_ps = dyn["lag_fs"] / 1000
    if key == "rdf":
        return {pair: (run["rdf"]["r"], g) for pair, g in run["rdf"]["pairs"].items()}
    if key == "vacf":
        return {sp: (lag_ps, z / z[0]) for sp, z in dyn["vacf"].items()}
    if key == "msd":
        return {sp: (lag_ps, m) for sp, m in dyn["msd"].items()}
    return {sp: (v["nu_THz"], v["spectrum"]) for sp, v in dyn["vdos"].items()}


def _per_key_plot(results: dict, outdir: Path, key: str) -> Path:
    runs = results["runs"]
    panels = list(_curves(next(iter(runs.values())), key))
    xlabel, ylabel, title = PER_KEY[key]
    fig = Figure(figsize=(4.2 * len(panels), 3.6), constrained_layout=True)
    axes = [fig.add_subplot(1, len(panels), k + 1) for k in range(len(panels))]
    for label, colour, style in _styles(results):
        for ax, (name, (x, y)) in zip(axes, _curves(runs[label], key).items()):
            ax.plot(x, y, style, color=colour, lw=1, label=label)
    for ax, name in zip(axes, panels):
        ax.set(xlabel=xlabel, ylabel=ylabel, title=name)
        if key == "msd":
            lo, hi = results["settings"]["fit_window_fs"]
            ax.axvspan(lo / 1000, hi / 1000, color="grey", alpha=0.15)
        if key == "rdf":
            ax.axhline(1.0, color="grey", lw=0.5)
        if key == "vdos":
            ax.set_xlim(0, max(_spectral_extent(*_curves(run, key)[name]) for run in runs.values()))
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, outdir / f"{key}.png")


def _spectral_extent(nu: np.ndarray, spectrum: np.ndarray, share: float = 0.999) -> float:
    """The frequency below which ``share`` of the spectrum lies (plots stop there, not at Nyquist)."""
    cumulative = np.cumsum(np.clip(spectrum, 0, None))
    return float(nu[min(np.searchsorted(cumulative, share * cumulative[-1]) + 1, len(nu) - 1)]) * 1.2


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
