"""Finite groups and their representation theory, numpy-first."""

from .finite import (Group, GroupError, alternating, check_table, cyclic, dihedral, direct_product, from_table,
                     group, symmetric)
from .irreps import Irrep, character_table, irreps

__all__ = ["Group", "GroupError", "Irrep", "alternating", "character_table", "check_table", "cyclic", "dihedral",
           "direct_product", "from_table", "group", "irreps", "symmetric"]
