"""Evaluate several runs of one system side by side, optionally against a reference run.

Every run is measured with the same settings (RDF grid, diffusion fit window in fs), so that the
numbers of two runs, and their distances from the reference, are comparable.
"""
from __future__ import annotations

from typing import Mapping

from .dynamics import dynamics, spectrum_l1
from .energy import calculator_energies, energy_summary, kinetic_energy, load_system, system_energies, system_name
from .structure import rdf, rdf_l1
from .thermal import temperatures
from .trajectory import EvaluationError, Trajectory

#: Targets the numbers are judged against (docs/evaluation.md).
GOALS = {
    "energy_drift": {"threshold": 0.1, "unit": "meV/atom/ps", "text": "|energy drift| <= 0.1 meV/atom/ps"},
    "temperature_spread": {"threshold": 0.02, "unit": "", "text": "species temperatures within 2 % of each other"},
    "rdf_l1": {"threshold": 0.05, "unit": "", "text": "RDF L1 distance from the reference <= 0.05 (every pair)"},
    "diffusion": {"threshold": 0.10, "unit": "", "text": "diffusion within 10 % of the reference (every species)"},
}
MIN_FRAMES = 10  # 8 blocks for temperature errors; >= 3 lags in the diffusion fit window
DEFAULT_FIT_WINDOW = (0.1, 0.5)  # fractions of the shortest run: past the ballistic regime, before the noise
REFERENCE_LABEL = "reference"


def evaluate(runs: Mapping[str, Trajectory], reference: str | Trajectory | None = None, *, system=None,
             calculator=None, r_max: float | None = None, rdf_bins: int = 200, rdf_frames: int = 200,
             fit_window: tuple[float, float] = DEFAULT_FIT_WINDOW, progress: bool = True) -> dict:
    """Measure each run; compare with ``reference`` (a label of ``runs`` or a Trajectory) if given.

    system      built-in name, YAML path or config dict: potential energies are re-evaluated with its
                LAMMPS lines (or, for a YAML with engine: ase, its calculator); else ``calculator`` (an ASE
                calculator); else energies stored in the file
    r_max       RDF range (Å); default and upper bound: half the smallest cell width of any run
    fit_window  diffusion fit window as fractions of the shortest run's duration
    Returns a dict of plain numbers and numpy arrays (``report.to_jsonable`` makes it JSON).
    """
    runs = dict(runs)
    if isinstance(reference, Trajectory):
        runs[REFERENCE_LABEL] = reference
        reference = REFERENCE_LABEL
    if not runs:
        raise EvaluationError("nothing to evaluate: give at least one trajectory")
    if reference is not None and reference not in runs:
        raise EvaluationError(f"reference {reference!r} is not one of the runs {list(runs)}")
    _check(runs, reference)
    if system is not None:
        system = (load_system(system), system_name(system))
    settings = _settings(runs, r_max, rdf_bins, rdf_frames, fit_window)
    warnings = settings.pop("warnings")
    results = {"reference": reference, "goals": GOALS, "settings": settings, "warnings": warnings, "runs": {}}
    for label, traj in runs.items():
        results["runs"][label] = _measure(label, traj, settings, system, calculator, progress, warnings)
    if reference is not None:
        ref = results["runs"][reference]
        for label, run in results["runs"].items():
            if label != reference:
                run["vs_reference"] = compare(run, ref)
        ref["rdf_l1_noise"] = {pair: rdf_l1(*halves) for pair, halves in ref["rdf"]["halves"].items()}
    for label, run in results["runs"].items():
        run["goals"] = judge(run, is_reference=label == reference)
    return results


def _check(runs: dict[str, Trajectory], reference: str | None) -> None:
    for label, traj in runs.items():
        traj.require_frames(MIN_FRAMES, f"evaluation (run {label!r})")
        traj.require_velocities(f"evaluation (run {label!r}: temperatures, kinetic energy, VACF)")
    if reference is None:
        return
    expected = runs[reference].species_counts()
    for label, traj in runs.items():
        if traj.species_counts() != expected:
            raise EvaluationError(
                f"run {label!r} ({traj.source}) has atoms {traj.species_counts()} but the reference "
                f"{reference!r} ({runs[reference].source}) has {expected}: compare runs of the same system")


def _settings(runs, r_max, rdf_bins, rdf_frames, fit_window) -> dict:
    warnings = []
    half_width = min(t.min_half_width() for t in runs.values())
    if r_max is None:
        r_max = half_width
    elif r_max > half_width:
        warnings.append(f"r_max {r_max:g} Å exceeds half the smallest cell width ({half_width:.3g} Å): beyond it "
                        "g(r) sees periodic copies of the same pairs")
    if not (rdf_bins >= 1 and int(rdf_bins) == rdf_bins):
        raise EvaluationError(f"rdf_bins (--bins) must be a positive whole number of RDF bins, got {rdf_bins!r}")
    if not r_max > 0:
        raise EvaluationError(f"r_max (--r-max) must be a positive distance in Å, got {r_max!r}")
    lo, hi = fit_window
    if not 0 <= lo < hi <= 0.5:
        raise EvaluationError(f"fit_window {fit_window}: need 0 <= start < end <= 0.5 (fractions of the run; lags "
                              "beyond half the run are not computed)")
    shortest = min(t.duration_fs for t in runs.values())
    for label, traj in runs.items():
        warnings += [f"run {label!r}: {warning}" for warning in traj.warnings]
        if not (traj.unwrapped or traj.images is not None) and traj.largest_step() > 0.5 * traj.min_half_width():
            warnings.append(f"run {label!r}: an atom moved {traj.largest_step():.3g} Å between frames, over a quarter "
                            "of the cell width; minimum-image unwrapping may be wrong (save image flags or "
                            "unwrapped positions, or frames more often)")
    return {"r_max_A": float(r_max), "rdf_bins": int(rdf_bins), "rdf_frames": int(rdf_frames),
            "fit_window_fs": [lo * shortest, hi * shortest], "warnings": warnings}


def _measure(label, traj: Trajectory, settings: dict, system, calculator, progress, warnings) -> dict:
    run = {"source": traj.source, "n_atoms": traj.n_atoms, "n_frames": traj.n_frames,
           "interval_fs": traj.interval_fs, "duration_ps": traj.duration_fs / 1000,
           "species": traj.species_counts()}
    run["energy"] = _energy(label, traj, system, calculator, progress, warnings)
    run["temperature"] = temperatures(traj)
    run["rdf"] = rdf(traj, settings["r_max_A"], settings["rdf_bins"], settings["rdf_frames"])
    run["dynamics"] = dynamics(traj, tuple(settings["fit_window_fs"]))
    return run


def _energy(label, traj, system, calculator, progress, warnings) -> dict | None:
    if system is not None:
        cfg, name = system
        potential, source = system_energies(traj, cfg, name, progress)
    elif calculator is not None:
        potential, source = calculator_energies(traj, calculator, progress), type(calculator).__name__
    elif traj.potential_energy is not None:
        potential, source = traj.potential_energy, "stored in the trajectory file"
    else:
        warnings.append(f"run {label!r}: no energies (give a system to re-evaluate them with LAMMPS)")
        return None
    kinetic = kinetic_energy(traj)
    total = potential + kinetic
    summary = energy_summary(traj.times_fs, total, traj.n_atoms)
    return {"source": source, **summary, "time_ps": traj.times_fs / 1000,
            "total_eV_per_atom": total / traj.n_atoms, "potential_eV_per_atom": potential / traj.n_atoms}


def compare(run: dict, ref: dict) -> dict:
    """Distances of one run's measurements from the reference's."""
    out = {"rdf_l1": {pair: rdf_l1(g, ref["rdf"]["pairs"][pair]) for pair, g in run["rdf"]["pairs"].items()}}
    out["rdf_l1_max"] = max(out["rdf_l1"].values())
    t, t_ref = run["temperature"]["per_species"], ref["temperature"]["per_species"]
    out["temperature_relative"] = {s: t[s]["mean_K"] / t_ref[s]["mean_K"] - 1 for s in t}
    out["diffusion_relative"], out["vdos_l1"] = {}, {}
    for s, d in run["dynamics"]["diffusion"].items():
        d_ref = ref["dynamics"]["diffusion"][s]
        diffusive = d_ref["msd_A2_per_ps"] > 3 * d_ref["msd_stderr_A2_per_ps"]
        out["diffusion_relative"][s] = (d["msd_A2_per_ps"] / d_ref["msd_A2_per_ps"] - 1) if diffusive else None
        mine, theirs = run["dynamics"]["vdos"][s], ref["dynamics"]["vdos"][s]
        out["vdos_l1"][s] = spectrum_l1(mine["nu_THz"], mine["spectrum"], theirs["nu_THz"], theirs["spectrum"])
    relative = [abs(x) for x in out["diffusion_relative"].values() if x is not None]
    out["diffusion_relative_max"] = max(relative) if relative else None
    return out


#: A run is "within noise" of the reference when its temperatures and diffusion coefficients differ by at most
#: this many standard errors of a difference between two runs as noisy as the reference (the largest of several
#: species: 3, not 2, keeps false alarms rare), and its RDF by at most RDF_WITHIN_NOISE times the L1 distance
#: between the reference's own two halves (runs drawn from one distribution gave 0.7-1.8 times it:
#: tests/python/test_noise_verdicts.py, docs/evaluation.md).
WITHIN_SIGMA = 3.0
RDF_WITHIN_NOISE = 2.0


def against_noise(run: dict, ref: dict) -> dict:
    """How far a run is from the reference in units of the reference's own statistical noise, so that a short
    run of a small box is judged by what it can resolve: per-species temperatures and diffusion coefficients in
    sigma = sqrt(2) x the reference's standard error (the spread of the difference between two runs as noisy
    as the reference: a run's own large error bars, e.g. a drifting temperature, do not widen the tolerance),
    the RDF's L1 distance in units of the L1 between the reference's own two halves. None where there is
    nothing to compare (the reference does not diffuse)."""
    versus = run.get("vs_reference") or compare(run, ref)
    t, t_ref = run["temperature"]["per_species"], ref["temperature"]["per_species"]
    temperature = max(abs(t[s]["mean_K"] - t_ref[s]["mean_K"]) / _pair_sigma(t_ref[s]["stderr_K"]) for s in t)
    noise = {pair: rdf_l1(*halves) for pair, halves in ref["rdf"]["halves"].items()}
    rdf_ratio = max(versus["rdf_l1"][pair] / noise[pair] if noise[pair] > 0 else float("inf") for pair in noise)
    d_ref = ref["dynamics"]["diffusion"]
    diffusion = [abs(d["msd_A2_per_ps"] - d_ref[s]["msd_A2_per_ps"]) / _pair_sigma(d_ref[s]["msd_stderr_A2_per_ps"])
                 for s, d in run["dynamics"]["diffusion"].items() if versus["diffusion_relative"][s] is not None]
    return {"temperature_sigma": temperature, "rdf_l1_over_noise": rdf_ratio,
            "diffusion_sigma": max(diffusion) if diffusion else None}


def _pair_sigma(reference_error: float) -> float:
    """The standard error of a difference between two independent runs with the reference's error."""
    return float(reference_error) * 2 ** 0.5 if reference_error > 0 else float("nan")


def noise_verdict(value: float | None, unit: str = "sigma") -> str:
    """"within noise", or how far out: "off by 3.4 sigma" / "2.1x the noise"."""
    if value is None or value != value:
        return "n/a"
    limit = WITHIN_SIGMA if unit == "sigma" else RDF_WITHIN_NOISE
    if value <= limit:
        return "within noise"
    return f"off by {value:.1f} sigma" if unit == "sigma" else f"{value:.1f}x the noise"


def judge(run: dict, is_reference: bool) -> dict:
    """Each goal: the judged value, its threshold and met (None where it cannot be measured)."""
    def verdict(value, goal, why=None):
        threshold = GOALS[goal]["threshold"]
        return {"value": value, "threshold": threshold,
                "met": None if value is None else bool(value <= threshold), **({"note": why} if why else {})}

    energy = run["energy"]
    versus = run.get("vs_reference")
    no_ref = "this is the reference" if is_reference else "no reference run given"
    return {
        "energy_drift": verdict(None if energy is None else abs(energy["drift_meV_per_atom_ps"]), "energy_drift",
                                None if energy is not None else "no energies"),
        "temperature_spread": verdict(run["temperature"]["spread"], "temperature_spread"),
        "rdf_l1": verdict(versus["rdf_l1_max"] if versus else None, "rdf_l1", None if versus else no_ref),
        "diffusion": verdict(versus["diffusion_relative_max"] if versus else None, "diffusion",
                             None if versus and versus["diffusion_relative_max"] is not None
                             else ("the reference does not diffuse (D within 3 standard errors of 0)" if versus
                                   else no_ref)),
    }
