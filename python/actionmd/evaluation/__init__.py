"""``actionmd evaluate``: energy conservation, equipartition, structure and dynamics of MD trajectories.

    from actionmd.evaluation import read_trajectory, evaluate, write_report
    runs = {"action 20 fs": read_trajectory("run.traj"), "VV 1 fs": read_trajectory("ref.traj")}
    results = evaluate(runs, reference="VV 1 fs", system="lj-mixture")
    write_report(results, "report/")      # report.md, results.json, *.png

Definitions and units: docs/evaluation.md.
"""
import importlib

# Loaded on first use (PEP 562), so that registering the evaluate command (and `actionmd --help`) does not
# import matplotlib, LAMMPS and torch.
_WHERE = {"GOALS": "side_by_side", "evaluate": "side_by_side", "read_trajectory": "reading",
          "text_table": "report", "to_jsonable": "report", "write_report": "report",
          "EvaluationError": "trajectory", "Trajectory": "trajectory"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
