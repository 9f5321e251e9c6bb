"""The plan of a reproduction's sweeps, trained by nothing: every figure set's ``train`` (and
the shared ``prepare``) runs with :func:`toylab.core.plan.recording` on, so each
``run_sweep`` it calls compiles its programs and returns a plan instead of results. A set
whose later sweeps need an earlier one's results stops at that point (said in the notes);
the analyses (LLC chains, Hessians, bases) are not part of a sweep's plan."""

from __future__ import annotations

import importlib

from toylab.core.plan import SweepPlanned, recording

__all__ = ["plan_reproduction", "format_reproduction_plan"]


def _identity(plan) -> tuple:
    return (plan.family, plan.runs, tuple((tuple(sorted(g.static.items())), g.steps, g.runs, g.flops_per_step)
                                          for g in plan.groups))


def plan_reproduction(module, quick: bool = False, **plan_options) -> dict:
    """{"sweeps": [SweepPlan, ...] (each distinct sweep once), "notes": [str]} for a
    reproduction module (or its name)."""
    if isinstance(module, str):
        import toylab.experiments as experiments

        if module not in experiments.REPRODUCTIONS:
            from toylab.core.config import ConfigError

            raise ConfigError("module", module, f"unknown reproduction; choose from {', '.join(experiments.REPRODUCTIONS)}")
        module = importlib.import_module(experiments.REPRODUCTIONS[module])
    notes: list[str] = []
    with recording(**plan_options) as plans:
        prepare = getattr(module, "prepare", None)
        if prepare is not None:
            try:
                prepare(quick, True, None)
            except SweepPlanned:
                pass  # the shared sweep is planned; its analysis needs results
        for key, figure_set in module.FIGURES.items():
            before = len(plans)
            try:
                figure_set.train(quick, True, None, None)
            except SweepPlanned:
                n = len(plans) - before
                notes.append(f"set ({key}): its training reads a sweep's results (any sweep after that is not "
                             f"planned); {n} sweep{'s' if n != 1 else ''} planned before")
    seen, sweeps = set(), []
    for p in plans:
        if _identity(p) not in seen:
            seen.add(_identity(p))
            sweeps.append(p)
    return {"sweeps": sweeps, "notes": notes}


def format_reproduction_plan(name: str, planned: dict, target: str = "h100") -> str:
    """The reproduction's sweeps with their predicted time and memory on ``target``."""
    sweeps = planned["sweeps"]
    lines = [f"== plan of {name} (full): {len(sweeps)} sweep{'s' if len(sweeps) != 1 else ''}"]
    total, fits = 0.0, True
    for p in sweeps:
        t = p.targets.get(target)
        groups = "; ".join(", ".join(f"{k}={v}" for k, v in g.static.items()) or "defaults" for g in p.groups)
        if t is None:
            continue
        if not t.fits:
            fits = False
            lines.append(f"  {p.family}: {p.runs} runs ({groups}): does not fit one {target}: {t.notes[0]}")
            continue
        total += t.predicted_seconds
        lines.append(f"  {p.family}: {p.runs} runs x {p.groups[0].steps} steps ({groups}): predicted "
                     f"{_duration(t.predicted_seconds)} on one {target} ({t.bound}-bound), peak "
                     f"{_gib(max(g.run_bytes * min(g.runs, t.chunk_size) for g in p.groups))} of "
                     f"{_gib(t.memory_bytes)}")
    lines.append(f"  training predicted on one {target}: {_duration(total)}" + ("" if fits else
                                                                              " (some sweeps do not fit)")
                 + "; analyses not included")
    lines += [f"  note: {n}" for n in planned["notes"]]
    return "\n".join(lines)


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 28 else f"{n / 2 ** 20:.1f} MiB"
