"""``actionmd evaluate``: energy conservation, equipartition, structure and dynamics of MD trajectories.

    from actionmd.evaluation import read_trajectory, evaluate, write_report
    runs = {"action 20 fs": read_trajectory("run.traj"), "VV 1 fs": read_trajectory("ref.traj")}
    results = evaluate(runs, reference="VV 1 fs", system="lj-mixture")
    write_report(results, "report/")      # report.md, results.json, *.png

Definitions and units: docs/evaluation.md.
"""
from ..lazy import lazy_attributes

# Loaded on first use (PEP 562), so that registering the evaluate command (and `actionmd --help`) does not
# import matplotlib, LAMMPS and torch.
_WHERE = {"GOALS": "side_by_side", "evaluate": "side_by_side", "read_trajectory": "reading",
          "text_table": "report", "verdict_table": "report", "to_jsonable": "report", "write_report": "report",
          "EvaluationError": "trajectory", "Trajectory": "trajectory"}
__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes(__name__, _WHERE)
