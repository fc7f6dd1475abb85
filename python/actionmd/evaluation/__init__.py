"""``actionmd evaluate``: energy conservation, equipartition, structure and dynamics of MD trajectories.

    from actionmd.evaluation import read_trajectory, evaluate, write_report
    runs = {"action 20 fs": read_trajectory("run.traj"), "VV 1 fs": read_trajectory("ref.traj")}
    results = evaluate(runs, reference="VV 1 fs", system="lj-mixture")
    write_report(results, "report/")      # report.md, results.json, *.png

Definitions and units: docs/evaluation.md.
"""
from .evaluate import GOALS, evaluate
from .reading import read_trajectory
from .report import text_table, to_jsonable, write_report
from .trajectory import EvaluationError, Trajectory

__all__ = ["GOALS", "EvaluationError", "Trajectory", "evaluate", "read_trajectory", "text_table", "to_jsonable",
           "write_report"]
