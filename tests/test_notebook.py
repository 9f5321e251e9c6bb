"""Notebook-friendly: importing toylab never switches the user's matplotlib backend, and the
progress bar is tqdm's auto bar (a widget under Jupyter, a text bar in a terminal)."""

import io
import subprocess
import sys
import types

import pytest

from toylab.core.progress import Progress


@pytest.mark.slow
def test_importing_toylab_keeps_the_users_matplotlib_backend():
    code = ("import matplotlib\nmatplotlib.use('svg')\n"
            "import toylab, toylab.plots.superposition, toylab.plots.grokking, toylab.plots.groups, "
            "toylab.plots.bilinear, toylab.core.sweep\n"
            "import toylab.experiments.reproductions.superposition, toylab.experiments.reproductions.grokking\n"
            "print(matplotlib.get_backend())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "svg"


def test_progress_is_tqdm_auto_and_counts_every_unit(monkeypatch):
    made = []

    class FakeBar:  # stands in for tqdm.auto.tqdm (what a notebook gets as a widget)
        def __init__(self, **kwargs):
            self.kwargs, self.n, self.closed = kwargs, 0, False
            made.append(self)

        def update(self, n):
            self.n += n

        def set_postfix_str(self, s, refresh=True):
            self.note = s

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeBar))
    bar = Progress(100, label="sweep")
    bar.update(30, note="g000-c0000")
    bar.update(70)
    bar.close()
    assert len(made) == 1 and made[0].kwargs["total"] == 100 and made[0].kwargs["desc"] == "sweep"
    assert made[0].n == 100 and made[0].closed and made[0].note == "g000-c0000"
    assert Progress(5, quiet=True)._bar is None and len(made) == 1  # quiet: no bar at all


def test_text_progress_in_a_plain_stream():
    stream = io.StringIO()
    bar = Progress(4, label="x", stream=stream, kind="text")
    bar.update(2)
    bar.update(2)
    bar.close()
    assert "100.0%" in stream.getvalue() and bar.done == 4
