"""Progress of a sweep: a tqdm bar (a widget in a notebook, a line in a terminal), counting
instance-steps, with a plain-text fallback when tqdm is missing or not wanted."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Counts work units (here: instance-steps).

    Args:
        total: units of the whole job.
        label: the bar's description.
        quiet: show nothing (counting still works).
        kind: "auto" (``tqdm.auto``: a notebook widget under Jupyter, else a terminal bar),
            "text" (a one-line bar written to ``stream``).
    """

    def __init__(self, total: int, label: str = "", quiet: bool = False, stream=None, width: int = 24,
                 kind: str = "auto"):
        if kind not in ("auto", "text"):
            from .config import ConfigError

            raise ConfigError("progress", kind, "must be auto or text")
        self.total, self.label, self.quiet, self.width = max(int(total), 1), label, quiet, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._rate_from: tuple[float, int] | None = None
        self._bar = None
        if not quiet and kind == "auto":
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=self.total, desc=label, unit="step", unit_scale=True, file=self.stream,
                                 dynamic_ncols=True, leave=True)

    def update(self, units: int, note: str = ""):
        self.done += int(units)
        if self._bar is not None:
            self._bar.update(int(units))
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            return
        # The rate (and so the ETA) is measured from the first update on, so compile time
        # does not distort it.
        now = time.perf_counter()
        if self._rate_from is None:
            self._rate_from = (now, self.done)
            eta = None
        else:
            t0, d0 = self._rate_from
            rate = (self.done - d0) / max(now - t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else None
        if self.quiet:
            return
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * self.width) + "-" * (self.width - int(frac * self.width))
        eta_s = _fmt(eta) if eta is not None else "--:--"
        line = f"\r{self.label} [{bar}] {100 * frac:5.1f}% {_fmt(now - self.start)} elapsed, ETA {eta_s} {note}"
        self.stream.write(line.ljust(100)[:160])
        self.stream.flush()

    def close(self):
        if self._bar is not None:
            self._bar.close()
        elif not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
