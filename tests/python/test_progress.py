"""Progress bars: live on a terminal, one plain line a minute in a log file, none for per-batch bars."""
import io

from actionmd.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(stream, steps=2000, **kwargs):
    with progress_bar(total=steps, desc="gen.h5", unit="step", file=stream, **kwargs) as bar:
        for _ in range(steps):
            bar.update(1)
    return stream.getvalue()


def test_a_log_file_gets_whole_lines_not_thousands_of_updates():
    text = _run(io.StringIO())
    lines = [line.strip("\r") for line in text.splitlines() if line.strip("\r ")]
    assert 1 <= len(lines) <= 3, lines    # the start and the end (a run under a minute)
    assert lines[-1].startswith("gen.h5: 100% 2000/2000"), lines
    assert text.count("\r") <= 4


def test_a_terminal_gets_a_live_bar():
    text = _run(Terminal(), mininterval=0.0, miniters=1)
    assert text.count("\r") > 100


def test_per_batch_bars_and_disabled_bars_stay_out_of_logs():
    assert _run(io.StringIO(), leave=False) == ""
    assert _run(Terminal(), enabled=False) == ""
