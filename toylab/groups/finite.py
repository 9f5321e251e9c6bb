"""Finite groups as Cayley tables (numpy), with readable element names.

A :class:`Group` holds its multiplication table ``mul[a, b] = a∘b`` over elements 0..n−1
(element 0 is the identity), the inverses, and a name for each element. Constructors build
the cyclic, dihedral, symmetric and alternating groups and direct products; ``group(name)``
parses names such as ``C113``, ``D59``, ``S5``, ``A5`` and ``S4xC2``; ``from_table`` checks
any table against the group axioms and says which one fails.

Conventions: permutations act on {1..n}, composed right to left ((σ∘τ)(i) = σ(τ(i))), and are
named in cycle notation; the dihedral group D_n of order 2n has rotations r^k and reflections
s·r^k with s r s = r⁻¹.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import numpy as np

from ..core.config import ConfigError, described

__all__ = ["Group", "ConfigError", "cyclic", "dihedral", "symmetric", "alternating", "direct_product",
           "from_table", "check_table", "group", "MAX_SYMMETRIC_N", "MAX_ORDER"]

MAX_SYMMETRIC_N = 7  # S_7 has 5 040 elements: its table has 25 million entries
MAX_ORDER = 20_000  # a group's Cayley table (order²) must fit in memory beside a training run


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """A finite group: ``mul`` (n, n) int table, element 0 the identity, ``names`` (n,)."""

    name: str
    mul: np.ndarray
    names: tuple

    def __post_init__(self):
        self.mul.setflags(write=False)

    @property
    def order(self) -> int:
        return int(self.mul.shape[0])

    def __len__(self) -> int:
        return self.order

    @property
    def identity(self) -> int:
        return 0

    @property
    def inverse(self) -> np.ndarray:
        """(n,) inverse of each element."""
        inv = np.argmax(self.mul == 0, axis=1)
        return inv

    def element(self, name: str) -> int:
        """The element with this name."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError("name", name, f"not an element of {self.name}; elements look like "
                             f"{', '.join(self.names[:4])}") from None

    def element_order(self, a: int) -> int:
        x, k = int(a), 1
        while x != 0:
            x, k = int(self.mul[x, a]), k + 1
        return k

    def conjugacy_classes(self) -> list[np.ndarray]:
        """The conjugacy classes, each a sorted array of elements; the identity's first."""
        inv = self.inverse
        label = -np.ones(self.order, int)
        classes = []
        for a in range(self.order):
            if label[a] >= 0:
                continue
            orbit = np.unique(self.mul[self.mul[np.arange(self.order), a], inv])  # g a g⁻¹ over g
            label[orbit] = len(classes)
            classes.append(orbit)
        return classes

    def class_of(self) -> np.ndarray:
        """(n,) index of each element's conjugacy class."""
        out = np.empty(self.order, int)
        for i, c in enumerate(self.conjugacy_classes()):
            out[c] = i
        return out

    def is_abelian(self) -> bool:
        return bool((self.mul == self.mul.T).all())

    def check_axioms(self) -> None:
        """Raise ConfigError naming the first group axiom the table breaks."""
        check_table(self.mul)


def check_table(mul) -> None:
    """Raise ConfigError naming the first group axiom that the Cayley table ``mul`` breaks
    (closure, identity, inverses, associativity); element 0 must be the identity."""
    mul = np.asarray(mul)
    if mul.ndim != 2 or mul.shape[0] != mul.shape[1] or mul.shape[0] < 1:
        raise ConfigError("table", described(f"array of shape {mul.shape}"), "must be a square n×n table, n >= 1")
    if not np.issubdtype(mul.dtype, np.integer):
        raise ConfigError("table", described(f"array of dtype {mul.dtype}"), "must hold integer element indices")
    n = mul.shape[0]
    if mul.min() < 0 or mul.max() >= n:
        raise ConfigError("table", "entries", f"closure fails: every entry must be an element 0..{n - 1}")
    e = np.arange(n)
    if not ((mul[0] == e).all() and (mul[:, 0] == e).all()):
        raise ConfigError("table", "row/column 0", "identity fails: element 0 must satisfy 0∘a = a∘0 = a")
    rows_ok = all(len(np.unique(r)) == n for r in mul)
    cols_ok = all(len(np.unique(c)) == n for c in mul.T)
    if not (rows_ok and cols_ok) or not ((mul == 0).sum(axis=1) == 1).all():
        raise ConfigError("table", "rows/columns", "inverses fail: each element needs exactly one inverse "
                                                  "(every row and column a permutation)")
    # (a∘b)∘c == a∘(b∘c) for all triples, by gathers (n³ entries; fine for the sizes used here).
    if n <= 800:
        if not (mul[mul[:, :, None], e[None, None, :]] == mul[e[:, None, None], mul[None, :, :]]).all():
            raise ConfigError("table", "triples", "associativity fails: (a∘b)∘c != a∘(b∘c) for some a, b, c")
    else:  # Light's test on generators would be cheaper; random triples catch a broken table w.h.p.
        rng = np.random.default_rng(0)
        a, b, c = rng.integers(0, n, (3, 200_000))
        if not (mul[mul[a, b], c] == mul[a, mul[b, c]]).all():
            raise ConfigError("table", "triples", "associativity fails: (a∘b)∘c != a∘(b∘c) for some a, b, c")


def from_table(mul, names=None, name: str = "G") -> Group:
    """A group from its Cayley table (element 0 the identity), checked against the axioms."""
    mul = np.asarray(mul)
    check_table(mul)
    n = mul.shape[0]
    if names is None:
        names = tuple(f"g{i}" for i in range(n))
    names = tuple(str(x) for x in names)
    if len(names) != n or len(set(names)) != n:
        raise ConfigError("names", names, f"must be {n} distinct names, one per element")
    return Group(name, mul.astype(np.int32), names)


# ----------------------------------------------------------------------------- constructors


def _positive(field, n, lo=1, hi=None):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < lo or (hi is not None and n > hi):
        rng = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
        raise ConfigError(field, n, f"must be {rng}")
    return int(n)


def cyclic(n: int) -> Group:
    """C_n = Z/n under addition; elements named 0..n−1."""
    n = _positive("n", n)
    x = np.arange(n)
    return Group(f"C{n}", ((x[:, None] + x[None, :]) % n).astype(np.int32), tuple(str(i) for i in range(n)))


def dihedral(n: int) -> Group:
    """D_n, the symmetries of a regular n-gon (order 2n): rotations r^k (elements 0..n−1) and
    reflections s·r^k (elements n..2n−1), with s r s = r⁻¹. n >= 2 (D_2 is the Klein group)."""
    n = _positive("n", n, lo=2)

    # (f, k) stands for s^f r^k; (f1,k1)(f2,k2) = (f1+f2, (−1)^f2 k1 + k2).
    def index(f, k):
        return f * n + k % n

    mul = np.empty((2 * n, 2 * n), np.int32)
    for f1, k1, f2, k2 in itertools.product(range(2), range(n), range(2), range(n)):
        mul[index(f1, k1), index(f2, k2)] = index((f1 + f2) % 2, (-k1 if f2 else k1) + k2)
    names = tuple(("e" if k == 0 else "r" if k == 1 else f"r^{k}") for k in range(n)) + \
        tuple(("s" if k == 0 else "sr" if k == 1 else f"sr^{k}") for k in range(n))
    return Group(f"D{n}", mul, names)


def _cycle_name(perm) -> str:
    """Cycle notation of a permutation of {1..n} given as a tuple of images (0-based)."""
    seen, cycles = set(), []
    for i in range(len(perm)):
        if i in seen or perm[i] == i:
            continue
        cycle, j = [], i
        while j not in seen:
            seen.add(j)
            cycle.append(j + 1)
            j = perm[j]
        cycles.append("(" + " ".join(map(str, cycle)) + ")")
    return "".join(cycles) or "e"


def _permutation_group(perms, name) -> Group:
    perms = sorted(perms, key=lambda p: (p != tuple(range(len(p))), p))  # identity first
    arr = np.asarray(perms)
    # Encode each permutation as one integer (base n) to look compositions up in one go.
    n = arr.shape[1]
    weights = n ** np.arange(n)
    code_to_index = {int(c): i for i, c in enumerate(arr @ weights)}
    lookup = np.vectorize(code_to_index.__getitem__)
    mul = np.empty((len(perms), len(perms)), np.int32)
    for a, sigma in enumerate(arr):
        mul[a] = lookup(sigma[arr] @ weights)  # row a: σ∘τ for every τ, (σ∘τ)(i) = σ(τ(i))
    return Group(name, mul, tuple(_cycle_name(p) for p in perms))


def symmetric(n: int) -> Group:
    """S_n, all permutations of {1..n} (n <= 7), named in cycle notation."""
    n = _positive("n", n, 1, MAX_SYMMETRIC_N)
    return _permutation_group(list(itertools.permutations(range(n))), f"S{n}")


def _sign(perm) -> int:
    s, seen = 1, set()
    for i in range(len(perm)):
        if i in seen:
            continue
        j, length = i, 0
        while j not in seen:
            seen.add(j)
            j = perm[j]
            length += 1
        s *= -1 if length % 2 == 0 else 1
    return s


def alternating(n: int) -> Group:
    """A_n, the even permutations of {1..n} (n <= 7)."""
    n = _positive("n", n, 1, MAX_SYMMETRIC_N)
    return _permutation_group([p for p in itertools.permutations(range(n)) if _sign(p) == 1], f"A{n}")


def direct_product(*factors: Group) -> Group:
    """G₁ × G₂ × ...: pairs multiplied coordinate-wise, named (g, h, ...)."""
    if not factors or not all(isinstance(f, Group) for f in factors):
        raise ConfigError("factors", factors, "must be one or more Group objects")
    mul = factors[0].mul
    names = [(x,) for x in factors[0].names]
    for f in factors[1:]:
        m, k = mul.shape[0], f.order
        # element (i, j) -> i*k + j
        mul = (mul[:, None, :, None] * k + f.mul[None, :, None, :]).reshape(m * k, m * k)
        names = [a + (b,) for a in names for b in f.names]
    return Group("x".join(f.name for f in factors), mul.astype(np.int32),
                 tuple("(" + ", ".join(t) + ")" for t in names))


_FACTOR = re.compile(r"^([CDSA])(\d+)$")


def group(name: str) -> Group:
    """The group with this name: C<n>, D<n>, S<n>, A<n> (n <= 7 for S and A), or a product
    such as S4xC2 (factors joined by x)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("group", name, "must be a name like C113, D59, S5, A5 or S4xC2")
    parts = []
    for part in name.strip().split("x"):
        m = _FACTOR.match(part.strip())
        if not m:
            raise ConfigError("group", name, f"{part!r} is not a group name: use C<n>, D<n>, S<n>, A<n> "
                                            "(e.g. C113, D59, S5, A5), joined by x for products (S4xC2)")
        kind, n = m.group(1), int(m.group(2))
        lo, hi = {"C": (1, None), "D": (2, None), "S": (1, MAX_SYMMETRIC_N), "A": (1, MAX_SYMMETRIC_N)}[kind]
        if n < lo or (hi is not None and n > hi):
            raise ConfigError("group", name, f"{kind}{n}: n must be " + (f">= {lo}" if hi is None else f"in {lo}..{hi}"))
        parts.append((kind, n))
    orders = {"C": lambda n: n, "D": lambda n: 2 * n, "S": math.factorial, "A": lambda n: max(1, math.factorial(n) // 2)}
    order = math.prod(orders[k](n) for k, n in parts)
    if order > MAX_ORDER:
        raise ConfigError("group", name, f"order {order} is above {MAX_ORDER}: its Cayley table would not fit")
    factors = [{"C": cyclic, "D": dihedral, "S": symmetric, "A": alternating}[k](n) for k, n in parts]
    return factors[0] if len(factors) == 1 else direct_product(*factors)
