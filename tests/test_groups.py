"""Finite groups: constructors, names, conjugacy classes, the axiom checks."""

import importlib
import math
import re

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from toylab.groups import cyclic, dihedral, direct_product, from_table, group, symmetric
from toylab.testing import strategies as tst

# Number of conjugacy classes, known independently (partitions of n for S_n, etc.).
CLASSES = {"C7": 7, "C12": 12, "D3": 3, "D5": 4, "D6": 6, "S3": 3, "S4": 5, "S5": 7, "A4": 4, "A5": 5,
           "S3xC2": 6, "C2xC2xC3": 12, "D4xC3": 15, "S6": 11}


def _with_three_elements(g):
    return st.tuples(st.just(g), *(tst.group_elements(g) for _ in range(3)))


@settings(max_examples=30, deadline=None)
@example(case=(group("S5"), 7, 53, 119))
@given(case=tst.groups(max_order=60).flatmap(_with_three_elements))
def test_library_groups_satisfy_the_axioms(case):
    g, a, b, c = case
    g.check_axioms()
    n = g.order
    assert g.mul[g.mul[a, b], c] == g.mul[a, g.mul[b, c]]
    assert g.mul[a, g.inverse[a]] == 0 == g.mul[g.inverse[a], a]
    classes = g.conjugacy_classes()
    assert sorted(np.concatenate(classes).tolist()) == list(range(n))  # a partition of G
    assert list(classes[0]) == [0]
    for cls in classes:  # each class is closed under conjugation, and its size divides |G|
        assert n % len(cls) == 0
        x = cls[0]
        conj = {int(g.mul[g.mul[h, x], g.inverse[h]]) for h in range(n)}
        assert conj == set(cls.tolist())
    assert len(set(g.names)) == n


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_class_counts_of_named_groups(name):
    assert len(group(name).conjugacy_classes()) == CLASSES[name]


def test_orders_and_names():
    assert [group(n).order for n in ("C113", "D59", "S5", "A5", "S4xC2")] == [113, 118, 120, 60, 48]
    assert group("S4xC2").is_abelian() is False and cyclic(9).is_abelian()
    s3 = symmetric(3)
    # Right-to-left composition: (1 2)∘(2 3) = (1 2 3).
    assert s3.names[s3.mul[s3.element("(1 2)"), s3.element("(2 3)")]] == "(1 2 3)"
    d = dihedral(5)
    s, r = d.element("s"), d.element("r")
    assert d.mul[d.mul[s, r], s] == d.inverse[r]  # s r s = r⁻¹
    assert d.element_order(r) == 5 and d.element_order(s) == 2
    p = direct_product(cyclic(2), cyclic(3))
    assert p.names[p.mul[p.element("(1, 2)"), p.element("(1, 2)")]] == "(0, 1)"
    assert len(symmetric(6).conjugacy_classes()) == CLASSES["S6"]
    assert math.factorial(6) == symmetric(6).order


@pytest.mark.parametrize("name,needle", [
    ("Q8", "'Q8' is not a group name"),
    ("S8", "S8: n must be in 1..7"),
    ("D1", "D1: n must be >= 2"),
    ("C0", "C0: n must be >= 1"),
    ("S7xS7", "order 25401600 is above"),
    ("", "must be a name"),
])
def test_bad_group_names(name, needle):
    with pytest.raises(match=needle.replace("(", r"\(")):
        group(name)


def test_from_table_names_the_failing_axiom():
    good = cyclic(4).mul
    assert from_table(good, name="Z4").order == 4
    with pytest.raises(match="closure"):
        from_table(np.where(good == 3, 4, good))
    with pytest.raises(match="identity"):
        from_table(good[[1, 0, 2, 3]])
    bad_inverse = good.copy()
    bad_inverse[1, 1], bad_inverse[1, 3] = 0, 2  # row 1 hits 0 twice
    with pytest.raises(match="inverses"):
        from_table(bad_inverse)
    # A Latin square with identity 0 that is not associative (the smallest such loop, order 5).
    loop = np.array([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3], [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]])
    with pytest.raises(match="associativity"):
        from_table(loop)
    with pytest.raises(match="square"):
        from_table(np.zeros((2, 3), int))
    with pytest.raises(match="names"):
        from_table(good, names=["a", "a", "b", "c"])


# ----------------------------------------------------------------------------- irreps

from toylab.groups import alternating, frobenius_schur, irreps_from_table, real_irreps  # noqa: E402
from toylab.groups.irreps import (MAX_FALLBACK_ORDER, Irrep, character_table, irreps, partitions,  # noqa: E402
                                  standard_tableaux)

def assert_homomorphism(g, M, atol=1e-10):
    """ρ(a∘b) = ρ(a)ρ(b) for every pair (one gather against one batched product), ρ(e) = I, unitary."""
    d = M.shape[1]
    np.testing.assert_allclose(M[g.mul], np.einsum("aij,bjk->abik", M, M), atol=atol)
    np.testing.assert_allclose(M[0], np.eye(d), atol=atol)
    np.testing.assert_allclose(np.einsum("gji,gjk->gik", M.conj(), M), np.broadcast_to(np.eye(d), M.shape), atol=atol)


def character_multiset(reps):
    """Characters up to order, rounded, as sortable tuples of (Re, Im)."""
    return sorted(tuple((round(z.real, 6) + 0.0, round(z.imag, 6) + 0.0) for z in r.character.astype(complex))
                  for r in reps)


def quaternion_group():
    """Q8 = {±1, ±i, ±j, ±k} with its table computed from the Hamilton product."""
    def hamilton(p, q):
        a1, b1, c1, d1 = p
        a2, b2, c2, d2 = q
        return (a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2, a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
                a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2, a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2)

    units = [tuple(sign * (axis == k) for k in range(4)) for axis in range(4) for sign in (1, -1)]  # 1 first
    index = {u: i for i, u in enumerate(units)}
    table = [[index[hamilton(p, q)] for q in units] for p in units]
    return from_table(np.array(table), names=["1", "-1", "i", "-i", "j", "-j", "k", "-k"], name="Q8")


@settings(max_examples=40, deadline=None)
@example(g=group("S5"))
@given(g=tst.groups(max_order=60))
def test_irreps_are_unitary_homomorphisms_with_orthonormal_characters(g):
    reps = irreps(g)
    for r in reps:
        assert_homomorphism(g, r.matrices)
        assert r.over == "C" and r.kind in ("real", "complex", "quaternionic")
        assert r.indicator == frobenius_schur(g, r)
        if r.kind == "real":  # real-type irreps come as real orthogonal matrices
            assert r.matrices.dtype == np.float64
        assert (r.kind == "complex") == bool(np.iscomplexobj(r.character))  # complex type iff χ not real
    assert sum(r.dim ** 2 for r in reps) == g.order
    assert len(reps) == len(g.conjugacy_classes())
    X = np.stack([r.character for r in reps]).astype(complex)
    np.testing.assert_allclose(X.conj() @ X.T / g.order, np.eye(len(reps)), atol=1e-10)
    # Characters are class functions; no two irreps share one.
    table = character_table(g, reps)
    for cls_i, cls in enumerate(g.conjugacy_classes()):
        np.testing.assert_allclose(X[:, cls], np.broadcast_to(table[:, cls_i:cls_i + 1], X[:, cls].shape), atol=1e-10)
    assert len({tuple(np.round(row, 6)) for row in X}) == len(reps)


def test_symmetric_group_irreps_are_named_by_partitions_with_hook_length_dimensions():
    assert partitions(4) == [(4,), (3, 1), (2, 2), (2, 1, 1), (1, 1, 1, 1)]
    reps = irreps(group("S5"))
    dims = {r.name: r.dim for r in reps}
    assert dims == {"(5,)": 1, "(4, 1)": 4, "(3, 2)": 5, "(3, 1, 1)": 6, "(2, 2, 1)": 5, "(2, 1, 1, 1)": 4,
                    "(1, 1, 1, 1, 1)": 1}
    assert len(standard_tableaux((3, 2))) == 5
    sign = next(r for r in reps if r.name == "(1, 1, 1, 1, 1)").character
    g = group("S5")
    assert sign[g.element("(1 2)")] == -1 and sign[g.element("(1 2 3)")] == 1


def test_all_irreps_of_s6():
    reps = irreps(group("S6"))
    assert sum(r.dim ** 2 for r in reps) == 720 and len(reps) == 11
    assert max(r.dim for r in reps) == 16


# ----------------------------------------------------------------------------- alternating groups


def test_alternating_irreps_restrict_from_symmetric_and_split_the_self_conjugate_ones():
    expected = {3: [1, 1, 1], 4: [1, 3, 1, 1], 5: [1, 4, 5, 3, 3], 6: [1, 5, 9, 10, 5, 8, 8],
                7: [1, 6, 14, 15, 14, 35, 10, 10, 21]}
    for n, dims in expected.items():
        g = alternating(n)
        reps = irreps(g)
        assert [r.dim for r in reps] == dims
        assert sum(d * d for d in dims) == g.order and len(dims) == len(g.conjugacy_classes())
        if n <= 5:
            continue
        for r in reps:  # A6, A7: too big for all pairs; random pairs instead
            a, b = np.random.default_rng(n).integers(0, g.order, (2, 200))
            np.testing.assert_allclose(r.matrices[g.mul[a, b]], r.matrices[a] @ r.matrices[b], atol=1e-10)
    for n in (1, 2):
        assert [(r.name, r.dim) for r in irreps(alternating(n))] == [((f"({n},)"), 1)]
    # Restriction by element name: χ_λ on A_n is the S_n character, or χ_λ+ + χ_λ− when λ = λ'.
    a5, s5 = alternating(5), symmetric(5)
    chi_s = {r.name: r.character for r in irreps(s5)}
    on_a5 = [s5.element(x) for x in a5.names]
    chi_a = {r.name: r.character for r in irreps(a5)}
    assert set(chi_a) == {"(5,)", "(4, 1)", "(3, 2)", "(3, 1, 1)+", "(3, 1, 1)-"}
    for name in ("(5,)", "(4, 1)", "(3, 2)"):
        np.testing.assert_allclose(chi_a[name], chi_s[name][on_a5], atol=1e-10)
    np.testing.assert_allclose(chi_a["(3, 1, 1)+"] + chi_a["(3, 1, 1)-"], chi_s["(3, 1, 1)"][on_a5], atol=1e-10)


def test_a5_three_dimensional_irreps_have_golden_ratio_characters_on_5_cycles():
    g = alternating(5)
    reps = {r.name: r for r in irreps(g)}
    phi = (1 + np.sqrt(5)) / 2
    c, c2 = g.element("(1 2 3 4 5)"), g.element("(1 3 5 2 4)")  # a 5-cycle and its square: the two classes
    for name in ("(3, 1, 1)+", "(3, 1, 1)-"):
        r = reps[name]
        assert r.kind == "real" and r.matrices.dtype == np.float64  # real type, real orthogonal form
        assert sorted([r.character[c], r.character[c2]]) == pytest.approx([1 - phi, phi])
    assert reps["(3, 1, 1)+"].character[c] == pytest.approx(phi)  # "+": the larger value where they first differ


def test_a4_splits_2_2_into_the_omega_characters():
    g = alternating(4)
    reps = {r.name: r for r in irreps(g)}
    t = g.element("(1 2 3)")
    omega = np.exp(2j * np.pi / 3)
    values = sorted([reps["(2, 2)+"].character[t], reps["(2, 2)-"].character[t]], key=lambda z: z.imag)
    np.testing.assert_allclose(values, [omega ** 2, omega], atol=1e-10)
    assert reps["(2, 2)+"].kind == reps["(2, 2)-"].kind == "complex" and reps["(3, 1)"].kind == "real"
    a3 = {r.name: r.character for r in irreps(alternating(3))}  # A3 ≅ C3: (2, 1) splits into two 1-D
    np.testing.assert_allclose(sorted(a3["(2, 1)+"], key=lambda z: z.imag), [omega ** 2, 1, omega], atol=1e-10)


# ----------------------------------------------------------------------------- any group (Cayley table only)


@pytest.mark.parametrize("name", ["C1", "C6", "S3", "D4", "D5", "A4", "S4", "A5", "D4xC3"])
def test_irreps_from_table_match_the_library_characters(name):
    g = group(name)
    table_only = from_table(g.mul)
    reps = irreps_from_table(table_only)
    for r in reps:
        assert_homomorphism(table_only, r.matrices)
    assert character_multiset(reps) == character_multiset(irreps(g))
    np.testing.assert_allclose(reps[0].character, 1)  # trivial first
    assert [r.dim for r in reps] == sorted(r.dim for r in reps)
    assert [r.name for r in reps][:1] == ["d1#1"] and all(re.fullmatch(r"d\d+#\d+", r.name) for r in reps)
    # irreps() falls back to it for a group without a library name; the seed changes bases, not the answer.
    assert [r.name for r in irreps(table_only)] == [r.name for r in reps]
    other = irreps_from_table(table_only, seed=7)
    assert [r.name for r in other] == [r.name for r in reps]
    for a, b in zip(other, reps):
        np.testing.assert_allclose(a.character, b.character, atol=1e-8)


def test_a_table_with_a_library_name_but_another_labelling_falls_back():
    s4 = group("S4")
    relabel = np.concatenate([[0], np.random.default_rng(1).permutation(np.arange(1, 24))])  # new index of each
    back = np.argsort(relabel)
    table = relabel[s4.mul[back][:, back]]
    same_names = from_table(table, names=[s4.names[i] for i in back], name="S4")  # same group, consistent names
    assert [r.name for r in irreps(same_names)] == [r.name for r in irreps(s4)]
    wrong_names = from_table(table, names=s4.names, name="S4")  # the names no longer match the table
    a5 = group("A5")
    for g in (wrong_names, from_table(group("D4").mul, name="C8"), from_table(a5.mul, a5.names, "S5")):
        reps = irreps(g)
        assert reps[0].name == "d1#1"  # built by the fallback
        for r in reps:
            assert_homomorphism(g, r.matrices)


def test_fallback_retries_a_degenerate_draw_and_then_says_so(monkeypatch):
    module = importlib.import_module("toylab.groups.irreps")  # the package's `irreps` is the function

    real_clusters, calls = module._clusters, []

    def merge_first(w, tol):  # the first draw looks degenerate: all eigenvalues in one run
        calls.append(1)
        return [np.arange(len(w))] if len(calls) == 1 else real_clusters(w, tol)

    g = from_table(group("S3").mul)
    monkeypatch.setattr(module, "_clusters", merge_first)
    assert character_multiset(irreps_from_table(g)) == character_multiset(irreps(group("S3")))
    monkeypatch.setattr(module, "_clusters", lambda w, tol: [np.arange(len(w))])
    with pytest.raises(match="did not decompose"):
        irreps_from_table(g)


def test_fallback_refuses_large_orders():
    big = from_table(cyclic(MAX_FALLBACK_ORDER + 1).mul, name="Big")
    with pytest.raises(match=rf"order={MAX_FALLBACK_ORDER + 1}: .*Big.*<= {MAX_FALLBACK_ORDER}"):
        irreps_from_table(big)
    with pytest.raises(match="order="):
        irreps(big)
    with pytest.raises(ValueError, match="no kind"):
        Irrep("x", np.ones((2, 1, 1))).indicator
    with pytest.raises(match="irrep="):  # a reducible representation has no indicator in -1, 0, 1
        frobenius_schur(cyclic(2), Irrep("2 copies", np.stack([np.eye(2), np.eye(2)])))


# ----------------------------------------------------------------------------- real forms

FACTOR = {"real": 1, "complex": 2, "quaternionic": 4}


def check_real_forms(g, reps):
    for r in reps:
        M = r.matrices
        assert r.over == "R" and M.dtype == np.float64
        assert_homomorphism(g, M)
        assert r.commutant_dim == FACTOR[r.kind]
        assert r.dim == (r.complex_dim if r.kind == "real" else 2 * r.complex_dim)
        # ⟨χ, χ⟩ over R is the real dimension of the commutant: 1, 2 or 4.
        assert (r.character ** 2).mean() == pytest.approx(FACTOR[r.kind])
        assert frobenius_schur(g, r) == r.indicator
    assert sum(r.dim ** 2 / r.commutant_dim for r in reps) == pytest.approx(g.order)
    X = np.stack([r.character for r in reps])  # distinct real irreps: orthogonal real characters
    G = X @ X.T / g.order
    np.testing.assert_allclose(G, np.diag([FACTOR[r.kind] for r in reps]), atol=1e-9)


@settings(max_examples=25, deadline=None)
@example(g=group("S5"))
@given(g=tst.groups(max_order=60))
def test_real_irreps_are_real_orthogonal_and_account_for_the_group(g):
    reps, complex_reps = real_irreps(g), irreps(g)
    check_real_forms(g, reps)
    # Same order as irreps(g): each real irrep is named after the first of its complex ones.
    names = [r.name for r in complex_reps]
    assert [names.index(r.name) for r in reps] == sorted(names.index(r.name) for r in reps)
    assert len(reps) == sum(1 for r in complex_reps if r.kind != "complex") + \
        sum(1 for r in complex_reps if r.kind == "complex") // 2


def test_real_irreps_of_cyclic_groups_are_rotations():
    for n in (7, 12):
        reps = real_irreps(cyclic(n))
        half = [f"k={n // 2}"] if n % 2 == 0 else []
        assert [r.name for r in reps] == ["trivial"] + [f"k={k}" for k in range(1, (n - 1) // 2 + 1)] + half
        for r in reps[1:(n - 1) // 2 + 1]:
            k = int(r.name[2:])
            th = 2 * np.pi * k * np.arange(n) / n
            rot = np.stack([np.stack([np.cos(th), -np.sin(th)], -1), np.stack([np.sin(th), np.cos(th)], -1)], -2)
            np.testing.assert_allclose(r.matrices, rot, atol=1e-12)
            assert r.kind == "complex" and r.dim == 2
        if n % 2 == 0:
            np.testing.assert_allclose(reps[-1].matrices[:, 0, 0], (-1.0) ** np.arange(n))
    kinds = [r.kind for r in real_irreps(cyclic(7))]
    assert kinds == ["real", "complex", "complex", "complex"]


def test_real_irrep_kinds():
    for n in (3, 4, 5):
        assert {r.kind for r in real_irreps(symmetric(n))} == {"real"}
    a4 = {r.name: r for r in real_irreps(alternating(4))}
    assert set(a4) == {"(4,)", "(3, 1)", "(2, 2)+"}  # the ω, ω² pair is one 2-D real irrep
    assert a4["(2, 2)+"].kind == "complex" and a4["(2, 2)+"].dim == 2 and a4["(3, 1)"].kind == "real"


def test_q8_has_a_quaternionic_irrep():
    q8 = quaternion_group()
    assert q8.element_order(q8.element("i")) == 4 and q8.mul[q8.element("i"), q8.element("j")] == q8.element("k")
    reps = irreps(q8)
    assert sorted((r.dim, r.kind) for r in reps) == [(1, "real")] * 4 + [(2, "quaternionic")]
    two = next(r for r in reps if r.dim == 2)
    assert frobenius_schur(q8, two) == -1 and two.indicator == -1
    real = real_irreps(q8)
    check_real_forms(q8, real)
    assert sorted((r.dim, r.kind) for r in real) == [(1, "real")] * 4 + [(4, "quaternionic")]
