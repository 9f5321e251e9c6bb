"""The Local Interaction Basis (Bushnaq et al. 2024): features and interaction graphs that do
not change when a layer's activations are reparametrised by an invertible linear map.

A model is cut at named *node layers* into pure functions between them (:func:`cut`). Per
node layer l, with activations a (centred: the mean μ is held apart as the layer's
baseline, so the constant direction of the bias is never mixed into a feature):

    G  = E[(a − μ)(a − μ)ᵀ] = U D Uᵀ          the Gram matrix; directions with D ≤ t·max D dropped
    J  = ∂ f̂^{l+1} / ∂a                       per example, vmap(jacrev), the next layer's features
    M′ = E[JᵀJ],  M = D^½ Uᵀ M′ U D^½ = V Λ Vᵀ  the Jacobian Gram, in whitened coordinates
    C  = U D^-½ V Λ^½,  f̂^l = Cᵀ(a − μ)       the rotation; Λ are the importances (Λ ≤ t·max Λ dropped)
    C⁺ = Λ^-½ Vᵀ D^½ Uᵀ                        its pseudo-inverse: a = μ + C⁺ᵀ f̂ on the kept span

so that CᵀGC = diag(Λ) and C⁺M′C⁺ᵀ = I on the kept features. The bases are built from the
output backwards (f̂^{l+1} is needed for J); the output layer is rotated into its PCA basis
without whitening (its scale is the model's output). Because everything above transforms
covariantly, a layer reparametrised a → A a (with the next layer reading A⁻¹) has the same
features and Λ, up to sign (and rotations within exactly equal Λ). The PCA baseline
(:func:`pca_basis`) is U alone: the same centring and truncation, no Jacobians.

Edges between adjacent layers' features are mean squared integrated-gradient attributions,

    E[j, i] = mean_x ( f̂^l_i(x) · ∫₀¹ ∂f̂^{l+1}_j/∂f̂^l_i (α f̂^l(x)) dα )²,

the path running from the baseline (every feature 0: the mean activation) to the example;
the integral is Gauss–Legendre quadrature on [0, 1] with ``n_alpha`` nodes, exact when the
section is a polynomial of degree ≤ 2·n_alpha (its derivative along the path then has degree
≤ 2·n_alpha − 1): linear and bilinear sections are exact with one node.

Everything numeric here is a pure function of (model, inputs) with fixed shapes (dropped
directions are zero columns and a ``kept`` mask, not a shorter array), so a basis vmaps over
a sweep's seeds or a run's snapshots. Grams and eigendecompositions run in float64 in a
scoped ``enable_x64`` (``precision="float64"``, the default); activations and Jacobians stay
in the model's dtype.

Concrete inputs, models, bases, edges and targets holding NaN or inf are refused with a
:class:`~toylab.core.config.ConfigError` naming the argument. Traced ones (under jit or vmap)
cannot be inspected: a layer whose Gram or Jacobian Gram is not finite then gets NaN
importances and features (and no kept ones), and the graph, the ablations' accuracy and loss
and ``edges_for_mass`` come out NaN, never a finite-looking number.
"""

from .basis import *  # noqa: F401,F403
from .basis import __all__ as _basis
# Internal pieces the lab's benchmarks rebuild the basis from, step by step.
from .basis import (_check_basis, _check_batch, _check_precision, _check_truncation, _chunked_mean,  # noqa: F401
                    _desc_eigh, _gram, _jacobian_gram, _keep, _pca_layer, _poisoned, _scope)
from .graph import *  # noqa: F401,F403
from .graph import __all__ as _graph
from .graph import _feature_map  # noqa: F401
from .labels import *  # noqa: F401,F403
from .labels import __all__ as _labels
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _modules
from .sections import *  # noqa: F401,F403
from .sections import __all__ as _sections
from .sections import _map_examples  # noqa: F401

__all__ = [*_sections, *_basis, *_graph, *_modules, *_labels]
