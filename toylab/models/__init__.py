"""Models: one module per family; equinox Modules with weights named as the papers name them."""

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class PairModel(Protocol):
    """What the analyses of a binary operation (tokens [a, b, =], modular arithmetic or a
    group) read of a model, so they never look inside a particular architecture. The
    one-layer transformer and the embedding MLPs implement it; a model of your own that does
    works with :mod:`toylab.analysis.fourier` and :mod:`toylab.analysis.representations`.
    """

    W_L: Any  # (n_out, n_neurons): each neuron's direct effect on the logits

    @property
    def n_operands(self) -> int: ...  # values each of a and b takes

    @property
    def n_neurons(self) -> int: ...

    def operand_embeddings(self) -> tuple[Any, Any]: ...  # (left, right), (d, n_operands) each

    def neuron_inputs(self) -> tuple[Any, Any] | None: ...  # per-neuron weights on a and b, if any

    def unembedding(self) -> Any: ...  # (n_out, d)

    def without_neurons(self, keep) -> "PairModel": ...  # neurons where keep is false cut off
