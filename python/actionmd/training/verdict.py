"""What `actionmd train` says at its end: the closing rollout against the goals a production model meets,
and a loud warning, with the likely cause, when it misses them (docs/training.md, "Did it work?").

A one-ps rollout of a small cell cannot resolve everything: each figure comes with its noise, and a goal
the noise cannot decide is said to be undecided (a long run with `actionmd evaluate` decides it)."""
from __future__ import annotations

import math

from ..evaluation.side_by_side import GOALS, WITHIN_SIGMA as SIGMA  # the goals `actionmd evaluate` judges

DRIFT_GOAL = GOALS["energy_drift"]["threshold"]              # meV/atom/ps under the reference potential
EQUIPARTITION_GOAL = GOALS["temperature_spread"]["threshold"]  # relative difference of species temperatures
EVALUATIONS_GOAL = 3.0      # action evaluations per stride, the predictor's guess included

CAUSES = ("the stride is too long for this model, or the model is too small for this potential "
          "(docs/training.md, \"Sizing a model\"); more data near the states the run visits also helps")


def rollout_verdict(rollout: dict | None) -> tuple[list[str], list[str]]:
    """(report lines, warnings) for the ``rollout`` entry of a run's summary.json."""
    if not rollout:
        return ["closing rollout: none (training.rollout_steps: 0, or no epoch improved)"], []
    stride = rollout.get("stride_fs")
    span = f" of {stride:g} fs ({rollout['steps'] * stride / 1000:g} ps)" if stride else ""
    lines, warnings = [f"closing rollout: {rollout['steps']} strides{span} from a validation state"], []
    if rollout.get("failed_at") is not None:
        warnings.append(f"the solver failed at stride {rollout['failed_at'] + 1} of the closing rollout: the map has "
                        f"no solution the solver can reach there; likely {CAUSES}")
    lines.append(_energy_line(rollout.get("energy") or {}, warnings))
    lines.extend(_temperature_lines(rollout, warnings))
    if rollout.get("mean_evaluations") is not None:
        evaluations = rollout["mean_evaluations"]
        met = "met" if evaluations <= EVALUATIONS_GOAL else "NOT met (each evaluation costs time: docs/training.md)"
        lines.append(f"  solver: {evaluations:.2f} action evaluations per stride (goal <= {EVALUATIONS_GOAL:g}): {met}; "
                     f"largest residual {rollout['max_residual']:.2g} Å")
    return lines, warnings


def _energy_line(energy: dict, warnings: list[str]) -> str:
    if "drift_meV_per_atom_ps" not in energy:
        why = energy.get("not_evaluated") or energy.get("error") or "not evaluated"
        return f"  energy drift under the reference: not measured ({why})"
    drift, error = energy["drift_meV_per_atom_ps"], energy.get("drift_stderr_meV_per_atom_ps", 0.0)
    if abs(drift) - SIGMA * error > DRIFT_GOAL:
        verdict = "NOT met"
        warnings.append(f"the closing rollout drifts {drift:+.3g} meV/atom/ps under the reference potential, "
                        f"{abs(drift) / DRIFT_GOAL:.0f}x the goal of {DRIFT_GOAL:g}: likely {CAUSES}")
    elif abs(drift) + SIGMA * error <= DRIFT_GOAL:
        verdict = "met"
    else:
        verdict = "undecided at this length (actionmd evaluate on a longer run decides)"
    return (f"  energy drift under the reference: {drift:+.3g} ± {error:.2g} meV/atom/ps "
            f"(goal |drift| <= {DRIFT_GOAL:g}): {verdict}")


def _temperature_lines(rollout: dict, warnings: list[str]) -> list[str]:
    temps, errors = rollout.get("mean_temperature_K") or {}, rollout.get("temperature_stderr_K") or {}
    if not temps:
        return []
    parts = ", ".join(f"{s} {t:.0f}" + (f" ± {errors[s]:.0f}" if s in errors else "") + " K" for s, t in temps.items())
    if len(temps) < 2:
        return [f"  temperature: {parts}"]
    (cold, t_cold), (hot, t_hot) = min(temps.items(), key=lambda kv: kv[1]), max(temps.items(), key=lambda kv: kv[1])
    spread = t_hot / t_cold - 1.0
    noise = math.hypot(errors.get(hot, 0.0), errors.get(cold, 0.0)) / t_cold
    sigmas = spread / noise if noise > 0 else math.inf
    if spread - SIGMA * noise > EQUIPARTITION_GOAL:
        verdict = f"NOT met ({sigmas:.1f} sigma)"
        warnings.append(f"the closing rollout runs {hot} {100 * spread:.1f} % hotter than {cold} ({sigmas:.1f} sigma): "
                        f"the map does not share energy between species as the reference does; likely {CAUSES}")
    elif spread + SIGMA * noise <= EQUIPARTITION_GOAL:
        verdict = "met"
    else:
        verdict = (f"undecided at this length ({sigmas:.1f} sigma; the noise is {100 * noise:.1f} %, "
                   "actionmd evaluate on a longer run decides)")
    return [f"  temperatures per species: {parts}", f"  equipartition: {hot} {100 * spread:+.1f} % against {cold} "
            f"(goal within {100 * EQUIPARTITION_GOAL:g} %): {verdict}"]


def print_verdict(summary: dict, stream_out, stream_err) -> None:
    lines, warnings = rollout_verdict(summary.get("rollout"))
    for line in lines:
        print(line, file=stream_out)
    for warning in warnings:
        print(f"WARNING: {warning}", file=stream_err)
