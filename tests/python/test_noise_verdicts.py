"""Verdicts against the reference's own noise (evaluation.side_by_side.against_noise): a run drawn from the
same distribution as the reference is "within noise"; one 10 % hotter, or diffusing twice as fast, is off by
many standard errors; a run's own large error bar does not excuse it; the reference itself is never judged
against a goal it is the measure of."""
from __future__ import annotations

import math

import numpy as np
import pytest
from ase.data import atomic_masses

from actionmd.evaluation import Trajectory, evaluate, verdict_table
from actionmd.evaluation.side_by_side import against_noise, noise_verdict
from actionmd.units import EV, KB_EV

NUMBERS = np.array([18] * 60 + [10] * 60)  # Ar and Ne: two species
FRAMES, DT_FS, LENGTH = 400, 10.0, 20.0


def walkers(seed: int, temperature: float = 300.0, diffusion: float = 0.5) -> Trajectory:
    """Brownian walkers (D in Å²/ps) with independent Maxwell-Boltzmann velocities at ``temperature``, from one
    start shared by every run (as the runs of a comparison start from one state)."""
    start = np.random.default_rng(0).uniform(0, LENGTH, size=(1, len(NUMBERS), 3))
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=math.sqrt(2 * diffusion / 1000 * DT_FS), size=(FRAMES, len(NUMBERS), 3))
    positions = start + np.cumsum(steps, axis=0)
    sigma = np.sqrt(KB_EV * temperature * EV / atomic_masses[NUMBERS])
    velocities = rng.normal(size=positions.shape) * sigma[None, :, None]
    return Trajectory(numbers=NUMBERS, masses=atomic_masses[NUMBERS], positions=positions,
                      cells=np.eye(3) * LENGTH, interval_fs=DT_FS, velocities=velocities, unwrapped=True)


@pytest.fixture(scope="module")
def results():
    runs = {"truth": walkers(1), "same": walkers(2), "hot": walkers(3, temperature=330.0),
            "fast": walkers(4, diffusion=1.0)}
    return evaluate(runs, reference="truth", progress=False)


def test_a_run_like_the_reference_is_within_noise(results):
    noise = against_noise(results["runs"]["same"], results["runs"]["truth"])
    assert noise["temperature_sigma"] < 3.0
    assert noise["diffusion_sigma"] < 3.0
    assert noise["rdf_l1_over_noise"] < 2.0


def test_a_hotter_or_faster_run_is_off_by_many_sigma(results):
    truth = results["runs"]["truth"]
    hot, fast = (against_noise(results["runs"][label], truth) for label in ("hot", "fast"))
    assert hot["temperature_sigma"] > 10.0 and hot["diffusion_sigma"] < 3.0   # 10 % hotter: 11-22 sigma
    assert fast["diffusion_sigma"] > 5.0 and fast["temperature_sigma"] < 3.0  # 2x D: 5-15 sigma


def test_the_table_names_the_truth_and_says_how_far_each_run_is(results):
    table = verdict_table(results).splitlines()
    rows = {line.split()[0]: line for line in table[1:]}
    assert "(truth)" in rows["truth"] and "NOT met" not in "\n".join(table)
    assert rows["same"].count("within noise") == 3
    assert "off by" in rows["hot"] and "off by" in rows["fast"]


def test_a_wandering_run_is_not_excused_by_its_own_error_bar(results):
    """A run 10 % hot whose own error bar is 100 times the reference's (a temperature that wanders): the
    difference of the means counts, in units of the reference's noise, and stays many sigma."""
    truth = results["runs"]["truth"]
    run = {**results["runs"]["same"], "temperature": {**results["runs"]["same"]["temperature"]}}
    run["temperature"]["per_species"] = {s: {**t, "mean_K": t["mean_K"] * 1.1, "stderr_K": 100 * t["stderr_K"]}
                                         for s, t in run["temperature"]["per_species"].items()}
    assert against_noise(run, truth)["temperature_sigma"] > 10.0


def test_noise_verdict_words():
    assert noise_verdict(2.9) == "within noise" and noise_verdict(3.44) == "off by 3.4 sigma"
    assert noise_verdict(1.9, "noise") == "within noise" and noise_verdict(2.55, "noise") == "2.5x the noise"
    assert noise_verdict(None) == "n/a" and noise_verdict(float("nan")) == "n/a"
