"""Family records: each joins a family's config, task, model and loss for core/ to run.

The built-in families are listed here (name → module, one line) and each module is loaded
the first time its family is asked for, so listing them costs no JAX import."""

from ..core.family import register_lazy

BUILTIN = {
    "superposition": ("toylab.families.superposition",
                      "toy models of superposition: sparse features through a bottleneck (Elhage et al. 2022)"),
    "grokking": ("toylab.families.grokking",
                 "modular arithmetic (a op b) mod p: one-layer transformer or MLP, grokking (Nanda et al. 2023)"),
    "groups": ("toylab.families.groups",
               "group composition a∘b over a finite group: MLP or transformer, universality (Chughtai et al. 2023)"),
    "bilinear": ("toylab.families.bilinear",
                 "bilinear MLPs on images or toy tasks, read by eigendecomposition (Pearce et al. 2024)"),
    "dictionaries": ("toylab.families.dictionaries",
                     "sparse autoencoders and transcoders scored against known features (SAEs, TopK, JumpReLU, ...)"),
}

for _name, (_module, _description) in BUILTIN.items():
    register_lazy(_name, _module)
