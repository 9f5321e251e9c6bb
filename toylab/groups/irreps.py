"""Irreducible representations of finite groups, computed (never typed in).

An :class:`Irrep` holds one matrix per group element, ``matrices[g]`` (d × d), unitary, with
``matrices[a∘b] = matrices[a] @ matrices[b]``. ``irreps(g)`` gives the irreps over C; those of
real type (Frobenius–Schur indicator +1) always come as real orthogonal matrices, and each
irrep carries its ``kind`` ("real", "complex" or "quaternionic").

- Cyclic C_n: the 1-D characters x ↦ e^{2πikx/n} (complex type unless 2k ≡ 0 mod n).
- Dihedral D_n: trivial, sign, two more 1-D irreps when n is even, and the 2-D rotation /
  reflection irreps for k = 1..⌊(n−1)/2⌋ (real type).
- Symmetric S_n: one irrep per partition of n, in Young's orthogonal form (real orthogonal
  matrices on standard Young tableaux), named by the partition.
- Alternating A_n: restrictions from S_n. λ and its conjugate λ' restrict to the same irrep
  (kept once, under the one first in ``partitions(n)``); a self-conjugate λ splits into two
  irreps of half the dimension, "λ+" and "λ-", separated by a random element of the commutant.
- Direct products: Kronecker products of the factors' irreps.
- Any other group (e.g. from ``from_table``, order <= ``MAX_FALLBACK_ORDER``):
  ``irreps_from_table`` decomposes the left regular representation with a random Hermitian
  element of its commutant; irreps are named by dimension and index ("d1#1" is trivial).

``real_irreps(g)`` gives the irreps over R, all real orthogonal: a real-type irrep as itself,
a complex conjugate pair as one realification of dimension 2d (for C_n, the 2-D rotation of
frequency k), a quaternionic irrep as its realification of dimension 2d — the forms a
network's real weights can hold.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np

from ..core.config import ConfigError, described
from .finite import Group, _cycle_name

__all__ = ["Irrep", "irreps", "real_irreps", "irreps_from_table", "frobenius_schur", "cyclic_irreps",
           "dihedral_irreps", "symmetric_irreps", "alternating_irreps", "product_irreps", "partitions",
           "standard_tableaux", "character_table", "MAX_FALLBACK_ORDER"]

MAX_FALLBACK_ORDER = 1500  # the fallback diagonalises a |G|×|G| matrix: O(|G|³), a few seconds at 1500

_KINDS = {"real": 1, "complex": 0, "quaternionic": -1}


@dataclasses.dataclass(frozen=True, eq=False)
class Irrep:
    """One irreducible representation. ``over`` is "C" (irreducible over C, from ``irreps``) or
    "R" (irreducible over R, from ``real_irreps``). ``kind`` is the Frobenius–Schur type of the
    complex irrep(s) it comes from; a real form of complex or quaternionic kind has dimension 2d."""

    name: str
    matrices: np.ndarray  # (|G|, d, d)
    kind: str | None = None  # "real" | "complex" | "quaternionic"; None when not computed
    over: str = "C"

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

    @property
    def indicator(self) -> int:
        """Frobenius–Schur indicator of the complex irrep: +1 real, 0 complex, −1 quaternionic."""
        if self.kind is None:
            raise ValueError(f"irrep {self.name!r} has no kind: build it with irreps()/real_irreps(), or "
                             "call frobenius_schur(g, irrep)")
        return _KINDS[self.kind]

    @property
    def complex_dim(self) -> int:
        """Dimension d of the complex irrep(s) it comes from (dim / 2 for a real form of complex or
        quaternionic kind)."""
        return self.dim // 2 if self.over == "R" and self.kind in ("complex", "quaternionic") else self.dim

    @property
    def commutant_dim(self) -> int:
        """Real dimension of the commutant of a real form: 1 (R), 2 (C) or 4 (H) by kind, so
        Σ dim² / commutant_dim = |G| over ``real_irreps``; 1 for an irrep over C (Schur)."""
        if self.over == "C":
            return 1
        return {"real": 1, "complex": 2, "quaternionic": 4}[self.kind]


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


def _bfs(g: Group, generators: list[int]):
    """Breadth-first search over the Cayley graph from the identity, right-multiplying by the
    generators. Returns the steps (targets, sources, generator position) and the reached mask;
    replaying the steps builds any representation from its generator images."""
    known = np.zeros(g.order, bool)
    known[0] = True
    frontier, steps = np.array([0]), []
    while frontier.size and generators:
        level = []
        for j, s in enumerate(generators):
            k, first = np.unique(g.mul[frontier, s], return_index=True)
            fresh = ~known[k]
            k, src = k[fresh], frontier[first[fresh]]
            known[k] = True
            steps.append((k, src, j))
            level.append(k)
        frontier = np.concatenate(level)
    return steps, known


def _from_generators(g: Group, generators: list[int], images: list[np.ndarray], steps=None,
                     shape=None) -> np.ndarray:
    """A representation's matrices on every element from its generator images, ρ(h∘s) = ρ(h) ρ(s).
    Images may be stacks (..., d, d) of representations built together; `shape` when there are
    no generators (the trivial group)."""
    if steps is None:
        steps, known = _bfs(g, generators)
        if not known.all():
            raise ConfigError("generators", generators, "do not generate the group")
    shape = images[0].shape if images else shape
    mats = np.zeros((g.order,) + shape, np.result_type(float, *images))
    mats[0] = np.eye(shape[-1])
    for k, src, j in steps:
        mats[k] = mats[src] @ images[j]
    return mats


def _generating_set(g: Group) -> list[int]:
    """A few elements generating g (greedy: add the first element not yet reached)."""
    gens, known = [], np.zeros(g.order, bool)
    known[0] = True
    while not known.all():
        gens.append(int(np.argmin(known)))
        _, known = _bfs(g, gens)
    return gens


def _clusters(w: np.ndarray, tol: float) -> list[np.ndarray]:
    """Runs of sorted eigenvalues closer than tol, as index arrays."""
    return np.split(np.arange(len(w)), np.flatnonzero(np.diff(w) > tol) + 1)


def _split(mats: np.ndarray, parts: int, rng, real: bool) -> list[np.ndarray]:
    """Orthonormal bases of the eigenspaces of a random Hermitian (real: symmetric) element of the
    commutant of a representation known to split into `parts` pieces of equal dimension."""
    D = mats.shape[1]
    for _ in range(8):
        X = rng.normal(size=(D, D)) + (0 if real else 1j * rng.normal(size=(D, D)))
        X = X + X.conj().T
        P = (mats @ X @ mats.conj().transpose(0, 2, 1)).mean(0)  # group average lands in the commutant
        w, V = np.linalg.eigh((P + P.conj().T) / 2)
        scale = np.abs(w).max()
        runs = _clusters(w, 1e-8 * scale)
        gaps = [w[b[0]] - w[a[-1]] for a, b in zip(runs, runs[1:])]
        if len(runs) == parts and all(len(r) == D // parts for r in runs) and min(gaps, default=scale) > 1e-4 * scale:
            return [V[:, r] for r in runs]
    raise ConfigError("representation", described(f"dimension {D}"), f"did not split into {parts} equal irreducible parts")


def _realify(mats: np.ndarray) -> np.ndarray:
    """ρ over C of dim d as a real representation of dim 2d: [[Re, −Im], [Im, Re]]."""
    re, im = mats.real, mats.imag
    return np.concatenate([np.concatenate([re, -im], -1), np.concatenate([im, re], -1)], -2)


def _real_form(mats: np.ndarray, rng) -> np.ndarray:
    """Real orthogonal matrices equivalent to a real-type irrep: its realification is two copies
    of the real form; one eigenspace of a symmetric commutant element is one copy."""
    if not np.iscomplexobj(mats) or np.abs(mats.imag).max() < 1e-12:
        return np.ascontiguousarray(mats.real)
    R = _realify(mats)
    V = _split(R, 2, rng, real=True)[0]
    return V.T @ R @ V


def symmetric_irreps(g: Group, n: int) -> list[Irrep]:
    """Irreps of S_n (the group built by :func:`toylab.groups.symmetric`), one per partition."""
    if n == 1:
        return [Irrep("(1)", np.ones((1, 1, 1)))]
    gens = [g.element(f"({i} {i + 1})") for i in range(1, n)]
    steps, known = _bfs(g, gens)
    if not known.all():
        raise ConfigError("group", g.name, "the transpositions (i i+1) do not generate it")
    return [Irrep(str(shape), _from_generators(g, gens, _young_generators(shape), steps)) for shape in partitions(n)]


def _conjugate(shape) -> tuple[int, ...]:
    return tuple(sum(1 for r in shape if r > j) for j in range(shape[0]))


def alternating_irreps(g: Group, n: int, seed: int = 0) -> list[Irrep]:
    """Irreps of A_n (the group built by :func:`toylab.groups.alternating`) by restriction from
    S_n: one per pair {λ, λ'} of conjugate partitions, two ("λ+", "λ-") per self-conjugate λ."""
    if n <= 2:  # A_1, A_2: the trivial group
        return [Irrep(str((n,)), np.ones((1, 1, 1)))]
    # s_1 s_i (i = 2..n−1) generate A_n: s_i s_j = (s_1 s_i)⁻¹ (s_1 s_j), and even words are products of those.
    def swap(i):  # s_{i+1} = (i+1 i+2) as 0-based images
        return tuple(i + 1 if x == i else i if x == i + 1 else x for x in range(n))

    gens = [g.element(_cycle_name(tuple(swap(0)[x] for x in swap(i)))) for i in range(1, n - 1)]
    steps, known = _bfs(g, gens)
    if not known.all():
        raise ConfigError("group", g.name, "the products (1 2)(i i+1) do not generate it")
    shapes, rng, out = partitions(n), np.random.default_rng(seed), []
    for shape in shapes:
        conj = _conjugate(shape)
        if shapes.index(conj) < shapes.index(shape):
            continue  # same restriction as conj, already kept
        Y = _young_generators(shape)
        mats = _from_generators(g, gens, [Y[0] @ Y[i] for i in range(1, n - 1)], steps)
        if conj != shape:
            out.append(Irrep(str(shape), mats))
            continue
        halves = [U.conj().T @ mats @ U for U in _split(mats, 2, rng, real=False)]
        a, b = (np.trace(h, axis1=1, axis2=2) for h in halves)
        k = np.flatnonzero(np.abs(a - b) > 1e-6)[0]  # "+": larger real part (else imaginary) where they first differ
        diff = a[k] - b[k]
        if not (diff.real > 1e-6 or (abs(diff.real) <= 1e-6 and diff.imag > 0)):
            halves.reverse()
        out += [Irrep(f"{shape}+", halves[0]), Irrep(f"{shape}-", halves[1])]
    return out


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


# ----------------------------------------------------------------------------- any group


def frobenius_schur(g: Group, irrep: Irrep) -> int:
    """The Frobenius–Schur indicator (1/|G|) Σ_g χ(g²) of an irrep: +1 real, 0 complex,
    −1 quaternionic. For a real form (``over="R"``) of complex or quaternionic kind the sum is
    0 or −2 and is halved, so it gives the indicator of the complex irrep it comes from."""
    e = np.arange(g.order)
    nu = np.trace(irrep.matrices[g.mul[e, e]], axis1=1, axis2=2).mean()
    if irrep.over == "R" and irrep.kind in ("complex", "quaternionic"):
        nu = nu / 2
    r = round(float(nu.real))
    if abs(nu - r) > 1e-6 or r not in (-1, 0, 1):
        raise ConfigError("irrep", irrep.name, f"is not an irreducible representation of {g.name} "
                                              f"(Frobenius–Schur sum {complex(nu):.4g})")
    return r


def _finish(g: Group, reps: list[Irrep], seed: int = 0) -> list[Irrep]:
    """Set each irrep's kind; give real-type irreps real orthogonal matrices."""
    rng, out = np.random.default_rng(seed), []
    for r in reps:
        kind = {1: "real", 0: "complex", -1: "quaternionic"}[frobenius_schur(g, r)]
        mats = _real_form(r.matrices, rng) if kind == "real" else r.matrices
        out.append(Irrep(r.name, mats, kind))
    return out


def irreps_from_table(g: Group, seed: int = 0) -> list[Irrep]:
    """All irreps over C of any group given by its Cayley table (order <= MAX_FALLBACK_ORDER).

    A random Hermitian X = Σ_h c_h R(h) + h.c. (R the right-regular permutations) commutes with
    the left regular representation L; each eigenspace of a generic X carries one copy of an
    irrep. Each irrep is L restricted to one such eigenspace, built from its generator images.
    Sorted by dimension, then character (trivial first); named "d<dim>#<index>"."""
    N = g.order
    if N > MAX_FALLBACK_ORDER:
        raise ConfigError("order", N, f"irreps_from_table diagonalises the {N}×{N} regular representation of "
                                     f"{g.name}; the order must be <= {MAX_FALLBACK_ORDER}")
    inv, classes, cls = g.inverse, g.conjugacy_classes(), g.class_of()
    sizes = np.array([len(c) for c in classes])
    left_inv = g.mul[inv]  # left_inv[b, a] = b⁻¹a
    for attempt in range(6):
        rng = np.random.default_rng([seed, attempt])
        c = rng.normal(size=N) + 1j * rng.normal(size=N)
        X = c[left_inv.T]  # X[a, b] = c(b⁻¹a): commutes with every L(g)
        w, V = np.linalg.eigh(X + X.conj().T)
        runs = _clusters(w, 1e-9 * np.abs(w).max())
        # The projector P on an eigenspace is in the commutant, P[a, b] = p(b⁻¹a) with p = P[:, 0];
        # so χ(g) = tr L(g)P = Σ_a p(a⁻¹g⁻¹a) = (N/|class|) Σ_{x ~ g⁻¹} p(x).
        starts = np.array([r[0] for r in runs])
        p = np.add.reduceat(V * V[0].conj(), starts, axis=1)  # (N, runs)
        class_sums = np.zeros((len(classes), len(runs)), complex)
        np.add.at(class_sums, cls, p)
        reps_idx = np.array([c[0] for c in classes])
        chars = (N / sizes[cls[inv[reps_idx]]])[:, None] * class_sums[cls[inv[reps_idx]]]  # (classes, runs)
        norms = (sizes[:, None] * np.abs(chars) ** 2).sum(0) / N
        dims = np.array([len(r) for r in runs])
        if not (np.allclose(norms, 1, atol=1e-6) and np.allclose(chars[0], dims, atol=1e-6)):
            continue  # two eigenvalues merged (or one split): try another X
        # Runs with equal characters are copies of one irrep: sort by a random projection of the
        # character, then split each near-tie by comparing the characters themselves.
        h = rng.normal(size=len(classes)) @ chars.real + rng.normal(size=len(classes)) @ chars.imag
        by_h = np.argsort(h)
        groups = []
        for run in _clusters(h[by_h], 1e-6 * max(1.0, np.abs(h).max())):
            members = by_h[run]
            while members.size:
                same = np.abs(chars[:, members] - chars[:, members[:1]]).max(0) < 1e-6
                groups.append(members[same])
                members = members[~same]
        picked = np.array([grp[0] for grp in groups])
        if all(len(grp) == dims[grp[0]] for grp in groups) and len(picked) == len(classes) \
                and (dims[picked] ** 2).sum() == N:  # each irrep d times; complete
            break
    else:
        raise ConfigError("group", g.name, "the regular representation did not decompose into irreps "
                                          "(6 random commutant elements tried)")
    gens = _generating_set(g)
    steps, _ = _bfs(g, gens)

    # Order by dimension, then character (trivial first): independent of the seed.
    z = np.round(chars[:, picked], 6) + 0.0  # + 0.0 turns −0 into 0
    keys = [k for row in zip(-z.imag[::-1], -z.real[::-1]) for k in row] + [dims[picked]]
    picked = picked[np.lexsort(keys)]
    reps = []
    for d in sorted(set(dims[picked].tolist())):  # one replay of the BFS per dimension, irreps stacked
        js = [j for j in picked if dims[j] == d]
        U = np.stack([V[:, runs[j]] for j in js])  # (m, N, d)
        # U^† L(s) U, with (L(s)U)[a] = U[s⁻¹a]
        images = [U.conj().transpose(0, 2, 1) @ U[:, g.mul[inv[s]]] for s in gens]
        mats = _from_generators(g, gens, images, steps, U.shape[:1] + (d, d))  # (N, m, d, d)
        reps += [Irrep(f"d{d}#{i + 1}", np.ascontiguousarray(mats[:, i])) for i in range(len(js))]
    return _finish(g, reps, seed)


# ----------------------------------------------------------------------------- library groups


def _factor_irreps(kind: str, n: int, g: Group) -> list[Irrep]:
    if kind == "C":
        return cyclic_irreps(n)
    if kind == "D":
        return dihedral_irreps(n)
    if kind == "S":
        return symmetric_irreps(g, n)
    return alternating_irreps(g, n)


def _represents(g: Group, reps: list[Irrep]) -> bool:
    """Whether the structured irreps are homomorphisms of g's own table (a table may carry a
    library name without being that group). They all factor through one labelling φ of g by the
    library group's elements; a faithful sum of them being a homomorphism makes φ an isomorphism."""
    kernel, chosen = np.ones(g.order, bool), []
    for r in sorted(reps, key=lambda r: r.dim):
        is_id = np.abs(r.matrices - np.eye(r.dim)).max(axis=(1, 2)) < 1e-8
        if (kernel & ~is_id).any():
            chosen.append(r)
            kernel &= is_id
        if kernel.sum() == 1:
            break
    if kernel.sum() != 1:
        return False
    for s in _generating_set(g):
        for r in chosen:
            M = r.matrices
            if not np.allclose(M[g.mul[:, s]], M @ M[s], atol=1e-8):
                return False
    return True


def _library_irreps(g: Group) -> list[Irrep] | None:
    """Irreps built from the structure of a library group name, or None when g's name is not one
    or its table is not that group's."""
    from .finite import group as build

    parts = [re.fullmatch(r"([CDSA])(\d+)", p) for p in g.name.split("x")]
    if not all(parts):
        return None
    parts = [(m.group(1), int(m.group(2))) for m in parts]
    try:
        if len(parts) == 1:
            reps = _factor_irreps(*parts[0], g)
        else:
            factors = [build(f"{k}{n}") for k, n in parts]
            if int(np.prod([f.order for f in factors])) != g.order:
                return None
            reps = product_irreps([_factor_irreps(k, n, f) for (k, n), f in zip(parts, factors)])
    except (ConfigError, IndexError):  # names or structure not the library group's
        return None
    if reps[0].matrices.shape[0] != g.order or not _represents(g, reps):
        return None
    return reps


def irreps(g: Group) -> list[Irrep]:
    """All irreducible representations over C of a group: built from the structure of library
    groups (C<n>, D<n>, S<n>, A<n> and their products), otherwise by ``irreps_from_table``.
    Each has its ``kind``; real-type irreps come as real orthogonal matrices."""
    reps = _library_irreps(g)
    return irreps_from_table(g) if reps is None else _finish(g, reps)


def real_irreps(g: Group) -> list[Irrep]:
    """The irreducible representations over R (``over="R"``), real orthogonal float64, in the
    order of ``irreps(g)``: a real-type irrep as it is (dim d); a complex-type conjugate pair as
    the realification of its first member (dim 2d, named after it; for C_n the rotation by
    frequency k, k < n − k); a quaternionic irrep as its realification (dim 2d)."""
    reps, out, used = irreps(g), [], set()
    chars = [r.character.astype(complex) for r in reps]
    for i, r in enumerate(reps):
        if i in used:
            continue
        if r.kind == "real":
            out.append(Irrep(r.name, np.asarray(r.matrices, np.float64), "real", "R"))
            continue
        if r.kind == "complex":  # its partner has the conjugate character
            used.add(next(j for j in range(i + 1, len(reps)) if np.allclose(chars[j], chars[i].conj(), atol=1e-8)))
        out.append(Irrep(r.name, _realify(r.matrices), r.kind, "R"))
    return out


def character_table(g: Group, reps: list[Irrep] | None = None) -> np.ndarray:
    """(n_irreps, n_classes) characters on one element of each conjugacy class."""
    reps = irreps(g) if reps is None else reps
    reps_idx = [c[0] for c in g.conjugacy_classes()]
    return np.stack([r.character[reps_idx] for r in reps])
