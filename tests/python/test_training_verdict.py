"""The verdict `actionmd train` prints on its closing rollout: each goal met, NOT met or undecided by its noise."""
from actionmd.training.verdict import rollout_verdict


def _rollout(drift=0.05, drift_error=0.01, temps=None, errors=None, evaluations=2.5, failed_at=None):
    temps = temps or {"In": 700.0, "P": 705.0}
    return {"steps": 50, "stride_fs": 20.0, "failed_at": failed_at, "mean_evaluations": evaluations,
            "max_residual": 3e-6, "mean_temperature_K": temps,
            "temperature_stderr_K": errors or {s: 2.0 for s in temps},
            "energy": {"drift_meV_per_atom_ps": drift, "drift_stderr_meV_per_atom_ps": drift_error}}


def test_a_model_within_every_goal_gets_no_warning():
    lines, warnings = rollout_verdict(_rollout())
    text = "\n".join(lines)
    assert lines[0] == "closing rollout: 50 strides of 20 fs (1 ps) from a validation state"
    assert "+0.05 ± 0.01 meV/atom/ps (goal |drift| <= 0.1): met" in text
    assert "equipartition: P +0.7 % against In (goal within 2 %): met" in text
    assert "2.50 action evaluations per stride (goal <= 3): met" in text
    assert warnings == []


def test_drift_beyond_its_noise_is_a_loud_warning_naming_the_cause():
    lines, warnings = rollout_verdict(_rollout(drift=-0.9, drift_error=0.05))
    assert "NOT met" in "\n".join(lines)
    assert len(warnings) == 1 and "drifts -0.9 meV/atom/ps" in warnings[0] and "9x the goal" in warnings[0]
    assert "stride is too long for this model" in warnings[0]


def test_a_figure_the_noise_cannot_decide_is_undecided_not_failed():
    lines, warnings = rollout_verdict(_rollout(drift=0.15, drift_error=0.05,
                                               temps={"In": 700.0, "P": 735.0}, errors={"In": 10.0, "P": 10.0}))
    text = "\n".join(lines)
    assert "(goal |drift| <= 0.1): undecided at this length" in text
    assert "equipartition: P +5.0 % against In (goal within 2 %): undecided at this length (2.5 sigma" in text
    assert warnings == []


def test_broken_equipartition_and_a_failed_solve_are_warned_of():
    lines, warnings = rollout_verdict(_rollout(temps={"In": 700.0, "P": 800.0}, failed_at=12, evaluations=6.6))
    text = "\n".join(lines)
    assert "equipartition: P +14.3 % against In (goal within 2 %): NOT met (35.4 sigma)" in text
    assert "6.60 action evaluations per stride (goal <= 3): NOT met" in text
    assert any(w.startswith("the solver failed at stride 13 of the closing rollout") for w in warnings)
    assert any("runs P 14.3 % hotter than In" in w for w in warnings)


def test_a_rollout_without_energies_says_why():
    rollout = _rollout()
    rollout["energy"] = {"not_evaluated": "energies not re-evaluated: the reference is an ASE calculator"}
    lines, _ = rollout_verdict(rollout)
    assert "energy drift under the reference: not measured (energies not re-evaluated: the reference is an ASE" \
        in "\n".join(lines)
    assert rollout_verdict(None)[0][0].startswith("closing rollout: none")
