"""Progress bars that suit where the output goes: a live bar on a terminal, and in a log file (a batch
job's output, `nohup ... > log`) one plain line a minute instead of thousands of carriage-return updates."""
from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 60.0
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]\n"


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """tqdm to stderr; off when not ``enabled``; one line per LOG_INTERVAL_S when stderr is not a terminal.
    Bars meant only for a terminal (per-batch bars) pass ``leave=False`` and are left out of logs."""
    stream = kwargs.setdefault("file", sys.stderr)
    is_terminal = hasattr(stream, "isatty") and stream.isatty()
    if not enabled or (not is_terminal and kwargs.get("leave") is False):
        return tqdm(iterable, disable=True, **kwargs)
    if not is_terminal:
        kwargs.update(mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, bar_format=LOG_FORMAT,
                      dynamic_ncols=False)
    return tqdm(iterable, **kwargs)
