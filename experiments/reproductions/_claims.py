"""Checked claims of a paper reproduction: what the paper says, what was measured, pass/fail."""

from __future__ import annotations

import dataclasses
import json
import textwrap

__all__ = ["Claim", "format_claims", "claims_to_json", "write_claims"]


@dataclasses.dataclass(frozen=True)
class Claim:
    reproduction: str  # e.g. "superposition (a)"
    claim: str  # what is checked, in a few words
    paper: str  # what the paper reports
    measured: str  # what this run measured (numbers)
    passed: bool


def format_claims(claims: list[Claim], width: int = 38) -> str:
    """A plain-text table, one claim per block of wrapped lines."""
    cols = [("reproduction", 18), ("claim", width), ("paper", 28), ("measured", 34), ("", 4)]
    header = " | ".join(name.ljust(w) for name, w in cols)
    lines = [header, "-+-".join("-" * w for _, w in cols)]
    for c in claims:
        cells = [textwrap.wrap(text, w) or [""] for text, (_, w) in
                 zip((c.reproduction, c.claim, c.paper, c.measured, "PASS" if c.passed else "FAIL"), cols)]
        for i in range(max(map(len, cells))):
            lines.append(" | ".join((cell[i] if i < len(cell) else "").ljust(w) for cell, (_, w) in zip(cells, cols)))
    n_pass = sum(c.passed for c in claims)
    lines.append(f"{n_pass} of {len(claims)} claims checked against the papers hold")
    return "\n".join(lines)


def claims_to_json(claims: list[Claim]) -> str:
    return json.dumps([dataclasses.asdict(c) for c in claims], indent=1)


def write_claims(path, claims: list[Claim]):
    """``claims.json``: each claim (reproduction, claim, paper, measured, passed) with the
    toylab and jax versions that measured it, so results compare across versions."""
    import datetime
    from pathlib import Path

    import jax

    import toylab
    from toylab.core.store import write_json

    path = Path(path)
    write_json(path, {
        "toylab_version": toylab.__version__,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "claims": [{**dataclasses.asdict(c), "passed": bool(c.passed)} for c in claims],
    })
    return path
