"""Irreducible representations of the library's groups, computed (never typed in).

An :class:`Irrep` holds one matrix per group element, ``matrices[g]`` (d × d), unitary (real
orthogonal for real-type irreps), with ``matrices[a∘b] = matrices[a] @ matrices[b]``.

- Cyclic C_n: the 1-D characters x ↦ e^{2πikx/n} (complex type unless 2k ≡ 0 mod n).
- Dihedral D_n: trivial, sign, two more 1-D irreps when n is even, and the 2-D rotation /
  reflection irreps for k = 1..⌊(n−1)/2⌋ (real type).
- Symmetric S_n: one irrep per partition of n, in Young's orthogonal form (real orthogonal
  matrices on standard Young tableaux), named by the partition.
- Direct products: Kronecker products of the factors' irreps.

Not built yet: irreps of A_n (restriction from S_n), the general fallback for a group given
only by its Cayley table, and real forms of the complex-type irreps (a conjugate pair as one
2-D rotation block, the form a network's weights can hold).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from .finite import Group, GroupError

__all__ = ["Irrep", "irreps", "cyclic_irreps", "dihedral_irreps", "symmetric_irreps", "product_irreps",
           "partitions", "standard_tableaux", "character_table"]


@dataclasses.dataclass(frozen=True, eq=False)
class Irrep:
    name: str
    matrices: np.ndarray  # (|G|, d, d)

    @property
    def dim(self) -> int:
        return int(self.matrices.shape[1])

    @property
    def character(self) -> np.ndarray:
        """(|G|,) traces (complex for complex-type irreps, else real)."""
        chi = np.trace(self.matrices, axis1=1, axis2=2)
        return chi.real if np.allclose(chi.imag, 0, atol=1e-9) else chi

    @property
    def is_real(self) -> bool:
        return not np.iscomplexobj(self.matrices) or bool(np.allclose(self.matrices.imag, 0, atol=1e-9))


# ----------------------------------------------------------------------------- families


def cyclic_irreps(n: int) -> list[Irrep]:
    x = np.arange(n)
    out = []
    for k in range(n):
        phase = np.exp(2j * np.pi * k * x / n)
        mats = phase.real[:, None, None] if (2 * k) % n == 0 else phase[:, None, None]
        out.append(Irrep("trivial" if k == 0 else f"k={k}", mats))
    return out


def dihedral_irreps(n: int) -> list[Irrep]:
    """Irreps of D_n in the element order of :func:`toylab.groups.dihedral` (r^k, then s·r^k)."""
    k = np.arange(n)
    rot_sign = np.concatenate([np.ones(n), np.ones(n)])
    refl_sign = np.concatenate([np.ones(n), -np.ones(n)])
    alt = np.concatenate([(-1.0) ** k, (-1.0) ** k])
    one = [("trivial", rot_sign), ("sign", refl_sign)]
    if n % 2 == 0:
        one += [("r->-1, s->1", alt), ("r->-1, s->-1", alt * refl_sign)]
    out = [Irrep(name, v[:, None, None]) for name, v in one]
    s = np.array([[1.0, 0.0], [0.0, -1.0]])
    for j in range(1, (n - 1) // 2 + 1):
        th = 2 * np.pi * j * k / n
        rot = np.stack([np.stack([np.cos(th), -np.sin(th)], -1), np.stack([np.sin(th), np.cos(th)], -1)], -2)
        out.append(Irrep(f"rho_{j}", np.concatenate([rot, s[None] @ rot])))
    return out


def partitions(n: int) -> list[tuple[int, ...]]:
    """Partitions of n, largest first: (n), (n−1, 1), ..."""
    def rec(n, largest):
        if n == 0:
            yield ()
            return
        for first in range(min(n, largest), 0, -1):
            for rest in rec(n - first, first):
                yield (first,) + rest
    return list(rec(n, n))


def standard_tableaux(shape) -> list[tuple[tuple[int, int], ...]]:
    """Standard Young tableaux of a shape, each as the (row, column) of the entries 1..n."""
    n = sum(shape)
    out = []

    def fill(pos, rows):
        m = len(pos)
        if m == n:
            out.append(tuple(pos))
            return
        for r in range(len(shape)):
            c = rows[r]
            if c < shape[r] and (r == 0 or rows[r - 1] > c):
                rows[r] += 1
                pos.append((r, c))
                fill(pos, rows)
                pos.pop()
                rows[r] -= 1

    fill([], [0] * len(shape))
    return out


def _young_generators(shape) -> list[np.ndarray]:
    """Young's orthogonal form of the adjacent transpositions s_i = (i i+1), i = 1..n−1."""
    tabs = standard_tableaux(shape)
    index = {t: j for j, t in enumerate(tabs)}
    n, d = sum(shape), len(tabs)
    gens = []
    for i in range(n - 1):  # entries i+1 and i+2 (0-based positions i, i+1)
        M = np.zeros((d, d))
        for j, t in enumerate(tabs):
            (r1, c1), (r2, c2) = t[i], t[i + 1]
            axial = (c2 - r2) - (c1 - r1)  # content difference
            M[j, j] = 1.0 / axial
            if abs(axial) > 1:
                swapped = list(t)
                swapped[i], swapped[i + 1] = t[i + 1], t[i]
                M[index[tuple(swapped)], j] = np.sqrt(1.0 - 1.0 / axial ** 2)
        gens.append(M)
    return gens


def _from_generators(g: Group, generators: list[int], images: list[np.ndarray]) -> np.ndarray:
    """A representation's matrices on every element, by breadth-first search over the Cayley
    graph: ρ(h∘s) = ρ(h) ρ(s)."""
    d = images[0].shape[0]
    mats = np.full((g.order, d, d), np.nan, dtype=images[0].dtype)
    mats[0] = np.eye(d)
    frontier = [0]
    while frontier:
        nxt = []
        for h in frontier:
            for s, M in zip(generators, images):
                k = int(g.mul[h, s])
                if np.isnan(mats[k, 0, 0]):
                    mats[k] = mats[h] @ M
                    nxt.append(k)
        frontier = nxt
    if np.isnan(mats[:, 0, 0]).any():
        raise GroupError("generators", generators, "do not generate the group")
    return mats


def symmetric_irreps(g: Group, n: int) -> list[Irrep]:
    """Irreps of S_n (the group built by :func:`toylab.groups.symmetric`), one per partition."""
    if n == 1:
        return [Irrep("(1)", np.ones((1, 1, 1)))]
    gens = [g.element(f"({i} {i + 1})") for i in range(1, n)]
    return [Irrep(str(shape), _from_generators(g, gens, _young_generators(shape))) for shape in partitions(n)]


def product_irreps(factor_irreps: list[list[Irrep]]) -> list[Irrep]:
    """Irreps of a direct product: Kronecker products, in the product's element order."""
    out = factor_irreps[0]
    for nxt in factor_irreps[1:]:
        combined = []
        for a, b in itertools.product(out, nxt):
            m = np.einsum("gij,hkl->ghikjl", a.matrices, b.matrices)
            G, H = a.matrices.shape[0], b.matrices.shape[0]
            combined.append(Irrep(f"{a.name} ⊗ {b.name}", m.reshape(G * H, a.dim * b.dim, a.dim * b.dim)))
        out = combined
    return out


def _factor_irreps(name: str, g: Group) -> list[Irrep]:
    import re

    m = re.fullmatch(r"([CDSA])(\d+)", name)
    if m is None:
        raise GroupError("group", g.name, "irreps are built for library groups only (C<n>, D<n>, S<n> and "
                                          "their products); the fallback for any Cayley table is not built yet")
    kind, n = m.group(1), int(m.group(2))
    if kind == "C":
        return cyclic_irreps(n)
    if kind == "D":
        return dihedral_irreps(n)
    if kind == "S":
        return symmetric_irreps(g, n)
    raise GroupError("group", name, "irreps of alternating groups are not built yet (next: restriction from S_n)")


def irreps(g: Group) -> list[Irrep]:
    """All irreducible representations (over C) of a library group, built from its structure."""
    from .finite import group as build

    parts = g.name.split("x")
    if len(parts) == 1:
        return _factor_irreps(parts[0], g)
    return product_irreps([_factor_irreps(p, build(p)) for p in parts])


def character_table(g: Group, reps: list[Irrep] | None = None) -> np.ndarray:
    """(n_irreps, n_classes) characters on one element of each conjugacy class."""
    reps = irreps(g) if reps is None else reps
    reps_idx = [c[0] for c in g.conjugacy_classes()]
    return np.stack([r.character[reps_idx] for r in reps])
