"""Finite groups and (next) their representation theory, numpy-first."""

from .finite import (Group, GroupError, alternating, check_table, cyclic, dihedral, direct_product, from_table,
                     group, symmetric)

__all__ = ["Group", "GroupError", "alternating", "check_table", "cyclic", "dihedral", "direct_product",
           "from_table", "group", "symmetric"]
