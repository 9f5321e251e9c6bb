"""Modular arithmetic: the full table of (a op b) mod p, a train mask and corrupted labels.

The whole table is built once in numpy (p² pairs, or p(p−1) for division, which excludes
b = 0). A fixed permutation ranks the pairs; the train set is the first ⌊f·N⌋ of them, so
the train fraction f is a traced number: the mask is ``rank < ⌊f·N⌋``. Label noise works the
same way: a second fixed order over the pairs picks the first ⌊ξ·N_train⌋ training pairs,
whose labels are replaced by uniformly random ones (a 1/p share of which happens to be
right, as in Doshi et al.). Held-out labels are never corrupted.
"""

from __future__ import annotations

import ast
import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

__all__ = ["OPERATIONS", "canonical_op", "check_op", "is_prime", "ModularTable", "modular_table",
           "train_mask", "n_train", "n_train_rows", "corrupted_mask", "noisy_labels"]

# Symbol -> name; names are accepted too.
OPERATIONS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
_NAMES = {v: k for k, v in OPERATIONS.items()}
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.Load, ast.Add, ast.Sub,
                  ast.Mult, ast.Pow, ast.Mod, ast.FloorDiv, ast.USub, ast.UAdd)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, int(math.isqrt(n)) + 1))


def canonical_op(op: str) -> str:
    """'+', '-', '*', '/' (names add, sub, mul, div map to them), or an expression in a and b."""
    op = op.strip()
    return _NAMES.get(op, op)


MAX_CONSTANT, MAX_EXPONENT = 10**9, 64  # keeps evaluation exact and quick
MAX_BITS = 4096  # values may reach 2**MAX_BITS before % p; more would make evaluation crawl
INT64_BITS = 62  # a bound below this evaluates in int64 numpy (no overflow possible)
MAX_EXPRESSION_P = 3000  # an expression is evaluated on all p² pairs when checked


def _bits(node, p_bits: int) -> int:
    """An upper bound on the bit length of the node's value for a, b in 0..p-1."""
    if isinstance(node, ast.Expression):
        return _bits(node.body, p_bits)
    if isinstance(node, ast.Name):
        return p_bits
    if isinstance(node, ast.Constant):
        return max(int(node.value).bit_length(), 1)
    if isinstance(node, ast.UnaryOp):
        return _bits(node.operand, p_bits)
    left = _bits(node.left, p_bits)
    if isinstance(node.op, ast.Pow):
        return left * max(int(node.right.value), 1)
    right = _bits(node.right, p_bits)
    if isinstance(node.op, (ast.Add, ast.Sub)):
        return max(left, right) + 1
    if isinstance(node.op, ast.Mult):
        return left + right
    if isinstance(node.op, ast.Mod):  # |x % y| < |y|
        return right
    return left  # floor division: never larger than the numerator


def _parse_expression(expr: str, p: int = 2):
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None, "does not parse as an expression in a and b"
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            return None, "may use only a, b, p, integers and + - * ** % //"
        if isinstance(node, ast.Name) and node.id not in ("a", "b", "p"):
            return None, f"unknown name {node.id!r}; use a, b and p"
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int):
                return None, "constants must be integers"
            if abs(node.value) > MAX_CONSTANT:
                return None, f"constants must be at most {MAX_CONSTANT} in size"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            if not (isinstance(node.right, ast.Constant) and isinstance(node.right.value, int)
                    and 0 <= node.right.value <= MAX_EXPONENT):
                return None, f"exponents must be integer constants in 0..{MAX_EXPONENT}"
    bits = _bits(tree, max(int(p).bit_length(), 1))
    if bits > MAX_BITS:
        return None, (f"its values can reach about 2**{bits} before reduction, more than 2**{MAX_BITS}; "
                      "reduce inside it with % p")
    return compile(tree, "<op>", "eval"), None


def _expression_bits(expr: str, p: int) -> int:
    return _bits(ast.parse(expr, mode="eval"), max(int(p).bit_length(), 1))


def check_op(op: str, p: int) -> str | None:
    """None when ``op`` is allowed for modulus p, else what is allowed. An expression is
    evaluated on every pair, so one that fails anywhere (a division by zero) is refused."""
    if not isinstance(op, str):
        return "must be a string: + - * / or an integer expression in a and b"
    op = canonical_op(op)
    if op in OPERATIONS:
        if op in ("*", "/") and not is_prime(p):
            return f"{op} needs a prime p (only then do the nonzero residues form a group); p={p} is not prime"
        return None
    code, problem = _parse_expression(op, p)
    if problem:
        return f"must be one of + - * / or an integer expression in a and b (e.g. a**2+a*b+b**2): {problem}"
    if p > MAX_EXPRESSION_P:
        return f"an expression is checked on all p² pairs; with an expression p must be at most {MAX_EXPRESSION_P} (p={p})"
    a, b = (x.ravel() for x in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    try:
        _evaluate(code, a, b, p, _expression_bits(op, p))
    except ArithmeticError as e:
        return f"fails on some pair (a, b) in 0..{p - 1} ({type(e).__name__}: {e})"
    return None


def _evaluate(code, a, b, p, bits: int | None = None):
    """The expression on every pair, exactly, reduced mod p: in int64 when its bit-length
    bound says no value can overflow, else with Python integers (no overflow, slower)."""
    if bits is not None and bits <= INT64_BITS:
        env = {"a": a.astype(np.int64), "b": b.astype(np.int64), "p": np.int64(p)}
        try:
            with np.errstate(divide="raise", invalid="raise"):  # x // 0 raises, as in Python
                out = np.broadcast_to(np.asarray(eval(code, {"__builtins__": {}}, env), np.int64), a.shape)
        except FloatingPointError:
            raise ZeroDivisionError("integer division or modulo by zero") from None
        return np.mod(out, p)
    env = {"a": a.astype(object), "b": b.astype(object), "p": int(p)}
    out = eval(code, {"__builtins__": {}}, env)
    out = np.broadcast_to(np.asarray(out, dtype=object), a.shape)
    return np.asarray([int(v) % p for v in out], np.int64)


class ModularTable(NamedTuple):
    """Every pair of the task, ordered by the split permutation (row r has rank r)."""

    a: np.ndarray  # (N,) int32
    b: np.ndarray  # (N,) int32
    c: np.ndarray  # (N,) int32, (a op b) mod p
    noise_order: np.ndarray  # (N,) int32: row indices in the order label noise is applied
    noise_labels: np.ndarray  # (N,) int32: the random label a row gets when it is corrupted
    p: int

    @property
    def n(self) -> int:
        return int(self.a.shape[0])

    def tokens(self) -> np.ndarray:
        """(N, 3) token rows [a, b, =] with '=' the token p."""
        return np.stack([self.a, self.b, np.full_like(self.a, self.p)], axis=1)


def modular_table(p: int, op: str = "+", data_seed: int = 0) -> ModularTable:
    """The full table for (a op b) mod p, rows shuffled by a permutation fixed by data_seed."""
    from ..core.config import ConfigError

    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 2:
        raise ConfigError("p", p, "must be an integer >= 2")
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ConfigError("data_seed", data_seed, "must be a non-negative integer")
    problem = check_op(op, p)
    if problem:
        raise ConfigError("op", op, problem)
    op = canonical_op(op)
    a, b = (x.ravel() for x in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
    if op == "+":
        c = a + b
    elif op == "-":
        c = a - b
    elif op == "*":
        c = a * b
    elif op == "/":
        c = a * np.asarray([pow(int(x), p - 2, p) for x in b])  # b^(p-2) = b^-1 (Fermat)
    else:
        c = _evaluate(_parse_expression(op, p)[0], a, b, p, _expression_bits(op, p))
    c = np.mod(c, p)
    rng = np.random.default_rng(data_seed)
    perm = rng.permutation(a.shape[0])
    noise_order = rng.permutation(a.shape[0]).astype(np.int32)
    noise_labels = rng.integers(0, p, size=a.shape[0]).astype(np.int32)
    return ModularTable(a[perm].astype(np.int32), b[perm].astype(np.int32), c[perm].astype(np.int32),
                        noise_order, noise_labels, p)


def n_train(n: int, train_fraction):
    """⌊f·N⌋ training pairs, at least 1 (traceable in f)."""
    return jnp.maximum(jnp.floor(train_fraction * n + 1e-4), 1.0)


def n_train_rows(n: int, fraction: float) -> int:
    """:func:`n_train` for a concrete fraction, as a Python int (a static row count)."""
    return max(int(math.floor(fraction * n + 1e-4)), 1)


def train_mask(n: int, train_fraction, rows: int | None = None):
    """(rows,) bool: row r trains when r < ⌊f·N⌋ (rows are in permutation order)."""
    return jnp.arange(n if rows is None else rows) < n_train(n, train_fraction)


def corrupted_mask(table: ModularTable, train_fraction, label_noise):
    """(N,) bool: the first ⌊ξ·N_train⌋ training rows in the table's noise order."""
    n = table.n
    is_train = train_mask(n, train_fraction)
    order = jnp.asarray(table.noise_order)
    train_in_order = is_train[order]
    before = jnp.cumsum(train_in_order) - train_in_order  # training rows earlier in the order
    k = jnp.floor(label_noise * n_train(n, train_fraction) + 1e-4)
    hit = train_in_order & (before < k)
    return jnp.zeros(n, bool).at[order].set(hit)


def noisy_labels(table: ModularTable, train_fraction, label_noise):
    """(N,) int32 labels: the true answer, or a uniformly random one on corrupted rows."""
    corrupted = corrupted_mask(table, train_fraction, label_noise)
    return jnp.where(corrupted, jnp.asarray(table.noise_labels), jnp.asarray(table.c))
