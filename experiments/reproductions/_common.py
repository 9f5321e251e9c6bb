"""The one shape of a reproduction: figure sets keyed by letter, each in four pieces
(:class:`FigureSet`: train, analyse, draw, claims), run by :func:`run_figures` (an optional
shared sweep prepared once), figures saved by :func:`save_figure`, and the
``python -m toylab.experiments.reproductions.NAME`` entry point."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Callable

__all__ = ["FigureSet", "save_figure", "run_figures", "check_only", "script_main"]


@dataclasses.dataclass(frozen=True)
class FigureSet:
    """One figure set of a reproduction, as four pieces with one job each:

    - ``train(quick, quiet, work, shared) -> trained``: the sweeps (the only piece that trains);
    - ``analyse(trained, quick) -> measured``: a dict of the numbers and arrays the figures and
      claims need (no training, no drawing);
    - ``draw(measured, out, quick)``: writes the figures into ``out``;
    - ``claims(measured, quick) -> [Claim]``: the papers' statements checked on the numbers
      (pure: a test can hand it numbers and see a claim fail).

    Called as ``figure_set(out, quick, quiet, work, shared)``, it runs the four in order and
    returns the claims.
    """

    train: Callable[..., Any]
    analyse: Callable[..., dict]
    draw: Callable[..., None]
    claims: Callable[..., list]

    def __call__(self, out, quick: bool, quiet: bool, work=None, shared=None) -> list:
        measured = self.analyse(self.train(quick, quiet, work, shared), quick)
        self.draw(measured, Path(out), quick)
        return self.claims(measured, quick)


def save_figure(fig, out: Path, name: str) -> Path:
    """Write ``fig`` as ``out/name`` (folder created) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def check_only(only: str | None, letters) -> str:
    """``only`` (letters of figure sets, None for all) checked against the sets that exist."""
    letters = "".join(letters)
    if only is None:
        return letters
    if not isinstance(only, str) or not only or any(c not in letters for c in only):
        from toylab.core.config import ConfigError

        raise ConfigError("only", only, f"must be letters of the figure sets: some of {letters}")
    return only


def run_figures(figures: dict, out, quick: bool, quiet: bool, only: str | None, work=None, prepare=None) -> list:
    """Run each figure function ``fn(out, quick, quiet, work, shared)`` whose key is in
    ``only`` (all when None); returns their claims in order. ``prepare(quick, quiet, work)``,
    when given, trains and analyses what the figures share, once, before the first of them
    (``shared`` is its result; None without it)."""
    # A function makes the figure sets from its key up to the next key ("a" of {"a", "d"}
    # makes a, b and c), so any of those letters asks for it.
    keys = sorted(figures)
    ends = keys[1:] + [chr(ord(keys[-1]) + 1)]
    covers = {k: "".join(chr(c) for c in range(ord(k), ord(end))) for k, end in zip(keys, ends)}
    only = None if only is None else check_only(only, "".join(covers.values()))
    chosen = [key for key in figures if not only or set(covers[key]) & set(only)]
    shared = prepare(quick, quiet, work) if prepare is not None and chosen else None
    if isinstance(shared, list):  # the preparation could not run: its claims say why
        return shared
    claims = []
    for key in chosen:
        claims += figures[key](Path(out), quick, quiet, work, shared)
    return claims


def script_main(doc: str, reproduce, only_help: str) -> None:
    """``python -m toylab.experiments.reproductions.NAME [--quick] [--out DIR] [--only KEYS] [--work DIR]``."""
    from toylab.experiments.reproductions._claims import format_claims

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="reproductions/script")
    ap.add_argument("--only", default=None, help=only_help)
    ap.add_argument("--work", default=None, help="keep the sweeps in this folder and reuse them")
    args = ap.parse_args()
    print(format_claims(reproduce(args.out, args.quick, only=args.only, work=args.work)))
