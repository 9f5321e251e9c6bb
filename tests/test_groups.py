"""Finite groups: constructors, names, conjugacy classes, the axiom checks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.groups import GroupError, cyclic, dihedral, direct_product, from_table, group, symmetric

NAMES = ["C1", "C2", "C7", "C12", "D2", "D3", "D5", "D6", "S1", "S3", "S4", "S5", "A3", "A4", "A5", "S3xC2",
         "C2xC2xC3", "D4xC3"]
# Number of conjugacy classes, known independently (partitions of n for S_n, etc.).
CLASSES = {"C7": 7, "C12": 12, "D3": 3, "D5": 4, "D6": 6, "S3": 3, "S4": 5, "S5": 7, "A4": 4, "A5": 5,
           "S3xC2": 6, "C2xC2xC3": 12, "D4xC3": 15, "S6": 11}


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_library_groups_satisfy_the_axioms(name, data):
    g = group(name)
    g.check_axioms()
    n = g.order
    a, b, c = (data.draw(st.integers(0, n - 1)) for _ in range(3))
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
    if name in CLASSES:
        assert len(classes) == CLASSES[name]
    assert len(set(g.names)) == n


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
    with pytest.raises(GroupError, match=needle.replace("(", r"\(")):
        group(name)


def test_from_table_names_the_failing_axiom():
    good = cyclic(4).mul
    assert from_table(good, name="Z4").order == 4
    with pytest.raises(GroupError, match="closure"):
        from_table(np.where(good == 3, 4, good))
    with pytest.raises(GroupError, match="identity"):
        from_table(good[[1, 0, 2, 3]])
    bad_inverse = good.copy()
    bad_inverse[1, 1], bad_inverse[1, 3] = 0, 2  # row 1 hits 0 twice
    with pytest.raises(GroupError, match="inverses"):
        from_table(bad_inverse)
    # A Latin square with identity 0 that is not associative (the smallest such loop, order 5).
    loop = np.array([[0, 1, 2, 3, 4], [1, 0, 3, 4, 2], [2, 4, 0, 1, 3], [3, 2, 4, 0, 1], [4, 3, 1, 2, 0]])
    with pytest.raises(GroupError, match="associativity"):
        from_table(loop)
    with pytest.raises(GroupError, match="square"):
        from_table(np.zeros((2, 3), int))
    with pytest.raises(GroupError, match="names"):
        from_table(good, names=["a", "a", "b", "c"])


# ----------------------------------------------------------------------------- irreps

from toylab.groups.irreps import character_table, irreps, partitions, standard_tableaux  # noqa: E402

IRREP_GROUPS = ["C1", "C2", "C5", "C6", "D2", "D3", "D4", "D5", "S1", "S2", "S3", "S4", "S5", "S3xC2", "D3xC4",
                "C2xC2xC3"]


@settings(max_examples=16, deadline=None)
@given(name=st.sampled_from(IRREP_GROUPS))
def test_irreps_are_unitary_homomorphisms_with_orthonormal_characters(name):
    g = group(name)
    reps = irreps(g)
    for r in reps:
        M = r.matrices
        # ρ(a∘b) = ρ(a)ρ(b) for every pair (one gather against one batched product).
        np.testing.assert_allclose(M[g.mul], np.einsum("aij,bjk->abik", M, M), atol=1e-10)
        np.testing.assert_allclose(np.einsum("gji,gjk->gik", M.conj(), M), np.broadcast_to(np.eye(r.dim), M.shape),
                                   atol=1e-10)
        if r.is_real:  # real-type irreps come as real orthogonal matrices
            assert not np.iscomplexobj(M) or np.abs(M.imag).max() < 1e-12
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


def test_irreps_of_a_group_given_only_by_its_table_is_a_clear_error():
    with pytest.raises(GroupError, match="library groups only"):
        irreps(from_table(cyclic(4).mul, name="Z4"))
