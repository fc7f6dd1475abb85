"""Reading a LAMMPS log: the last thermo table and the loop time (shared by the demo and the benchmarks)."""
from __future__ import annotations

import re

LOOP_TIME = re.compile(r"^Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps", re.M)


def thermo_rows(log: str) -> list[dict[str, float]]:
    """Rows of the last thermo table as dicts of floats; lines inside it that are not rows (warnings,
    fix actionmd's timing summary) are skipped."""
    lines = log.splitlines()
    heads = [k for k, line in enumerate(lines) if line.split()[:1] == ["Step"]]
    if not heads:
        return []
    names = lines[heads[-1]].split()
    rows = []
    for line in lines[heads[-1] + 1:]:
        if line.startswith("Loop time"):
            break
        try:
            values = [float(x) for x in line.split()]
        except ValueError:
            continue
        if len(values) == len(names):
            rows.append(dict(zip(names, values)))
    return rows


def loop_seconds(log: str) -> float | None:
    """Wall time LAMMPS reports for the last run, or None when the log has none."""
    found = LOOP_TIME.findall(log)
    return float(found[-1][0]) if found else None
