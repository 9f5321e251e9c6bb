"""Finite groups and their representation theory, numpy-first."""

from ..core.config import ConfigError
from .finite import (Group, alternating, check_table, cyclic, dihedral, direct_product, from_table,
                     group, symmetric)
from .irreps import Irrep, character_table, frobenius_schur, irreps, irreps_from_table, real_irreps

__all__ = ["Group", "ConfigError", "Irrep", "alternating", "character_table", "check_table", "cyclic", "dihedral",
           "direct_product", "frobenius_schur", "from_table", "group", "irreps", "irreps_from_table", "real_irreps",
           "symmetric"]
