"""A one-line progress bar with ETA, written to stderr (silent when quiet)."""

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
    """Counts work units (here: instance-steps). The rate, and so the ETA, is measured
    from the first update on, so compile time does not distort it."""

    def __init__(self, total: int, label: str = "", quiet: bool = False, stream=None, width: int = 24):
        self.total, self.label, self.quiet, self.width = max(int(total), 1), label, quiet, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._rate_from: tuple[float, int] | None = None

    def update(self, units: int, note: str = ""):
        self.done += int(units)
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
        if not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
