"""The toylab models and losses the degeneracy benchmark compares, ported to torch for the
peer scripts (devinterp_llc.py, pyhessian_top.py), which run in their own environment:
torch, numpy and the standard library only — never jax or toylab.

The JAX side (experiments/benchmarks/degeneracy.py) writes one .npz: ``settings`` (a JSON
string: the model's description, the sampler settings, the JAX loss at w*), the weights as
``w:<name>`` (names as the JAX pytree paths, ``blocks.0.W_Q``) and the data as ``d:<name>``
(the arrays the JAX loss gets, leading axis = rows). Each port follows its JAX module line by
line (the file named in its docstring); ``row_losses`` gives per-row losses whose mean over
any set of rows is the JAX loss on those rows.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from torch import nn

__all__ = ["load", "build", "row_losses", "full_loss", "to_torch"]


def load(path):
    """(settings dict, weights {name: np.ndarray}, data {name: np.ndarray}) from the .npz."""
    with np.load(path, allow_pickle=False) as z:
        settings = json.loads(str(z["settings"]))
        weights = {k[2:]: z[k] for k in z.files if k.startswith("w:")}
        data = {k[2:]: z[k] for k in z.files if k.startswith("d:")}
    return settings, weights, data


def to_torch(data):
    """The data arrays as tensors (integers as int64 for indexing)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v).astype(np.int64) if v.dtype.kind in "iu" else
                                np.ascontiguousarray(v)) for k, v in data.items()}


def _param(a):
    return nn.Parameter(torch.from_numpy(np.array(a, np.float32)))


def _neurons(pre, gate_pre, activation):
    # toylab/models/transformer.py: neurons()
    if activation == "bilinear":
        return pre * gate_pre
    if activation == "relu":
        return torch.relu(pre)
    if activation == "quadratic":
        return pre * pre
    raise ValueError(f"unknown activation {activation!r}")


class ToyModel(nn.Module):
    """toylab/models/superposition.py: W (n_hidden, n_features), b, W_out for "abs"."""

    def __init__(self, w, kind):
        super().__init__()
        self.kind = kind
        self.W, self.b = _param(w["W"]), _param(w["b"])
        self.W_out = _param(w["W_out"]) if "W_out" in w else None

    def forward(self, x):
        h = x @ self.W.T
        if self.kind not in ("linear", "relu_output"):
            h = torch.relu(h)
        decoder = self.W_out.T if self.kind == "abs" else self.W
        out = h @ decoder + self.b
        return out if self.kind == "linear" else torch.relu(out)


class Block(nn.Module):
    """toylab/models/transformer.py: Block (attention without biases, MLP with biases)."""

    def __init__(self, w, prefix):
        super().__init__()
        for name in ("W_Q", "W_K", "W_V", "W_O", "W_in", "b_in", "W_out", "b_out", "W_gate", "b_gate"):
            if prefix + name in w:
                setattr(self, name, _param(w[prefix + name]))
            else:
                setattr(self, name, None)

    def attention(self, x, alpha, last_only):
        # x (B, n_ctx, d_model); queries: every position, or the last one only
        n_ctx = x.shape[1]
        queries = x[:, -1:] if last_only else x
        d_head = self.W_Q.shape[1]
        q = torch.einsum("hdm,bqm->bhqd", self.W_Q, queries)
        k = torch.einsum("hdm,bkm->bhkd", self.W_K, x)
        v = torch.einsum("hdm,bkm->bhkd", self.W_V, x)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(d_head)
        q_pos = torch.arange(n_ctx)[-queries.shape[1]:]
        visible = torch.arange(n_ctx)[None, :] <= q_pos[:, None]  # (q, k) causal mask
        scores = scores.masked_fill(~visible, float("-inf"))
        softmax = torch.softmax(scores, dim=-1)
        uniform = visible.to(x.dtype) / visible.sum(-1, keepdim=True).to(x.dtype)
        pattern = alpha * softmax + (1.0 - alpha) * uniform
        z = torch.einsum("bhqk,bhkd->bqhd", pattern, v).reshape(x.shape[0], queries.shape[1], -1)
        return z @ self.W_O.T

    def mlp(self, x, activation):
        pre = x @ self.W_in.T + self.b_in
        gate_pre = x @ self.W_gate.T + self.b_gate if activation == "bilinear" else None
        return _neurons(pre, gate_pre, activation) @ self.W_out.T + self.b_out


class Transformer(nn.Module):
    """toylab/models/transformer.py: Transformer; logits at the last position, whose last
    layer computes its query, MLP and unembedding there alone (as the JAX model)."""

    def __init__(self, w, activation, alpha):
        super().__init__()
        self.activation, self.alpha = activation, float(alpha)
        self.W_E, self.W_pos, self.W_U = _param(w["W_E"]), _param(w["W_pos"]), _param(w["W_U"])
        n_layers = 1 + max(int(k.split(".")[1]) for k in w if k.startswith("blocks."))
        self.blocks = nn.ModuleList(Block(w, f"blocks.{i}.") for i in range(n_layers))

    def forward(self, tokens):
        # tokens (B, n_ctx) int64 -> logits (B, d_vocab_out)
        x = self.W_E.T[tokens] + self.W_pos[: tokens.shape[1]]
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            mid = (x[:, -1:] if last else x) + block.attention(x, self.alpha, last_only=last)
            x = mid + block.mlp(mid, self.activation)
        return x[:, -1] @ self.W_U


class EmbedMLP(nn.Module):
    """toylab/models/mlp.py: EmbedMLP (onehot: W_in's columns for a and for b; sum and
    concat: learned embeddings first); logits = W_out h + b_out."""

    def __init__(self, w, embed, activation):
        super().__init__()
        self.embed, self.activation = embed, activation
        for name in ("W_E_left", "W_E_right", "W_in", "b_in", "W_out", "b_out", "W_gate", "b_gate"):
            setattr(self, name, _param(w[name]) if name in w else None)

    def input_weights(self, gate=False):
        W = self.W_gate if gate else self.W_in
        if self.embed == "onehot":
            n_in = W.shape[1] // 2
            return W[:, :n_in], W[:, n_in:]
        if self.embed == "sum":
            return W @ self.W_E_left, W @ self.W_E_right
        d = self.W_E_left.shape[0]
        return W[:, :d] @ self.W_E_left, W[:, d:] @ self.W_E_right

    def hidden_pre(self, a, b, gate=False):
        left, right = self.input_weights(gate)
        pre = left.T[a] + right.T[b]
        bias = self.b_gate if gate else self.b_in
        return pre if bias is None else pre + bias

    def forward(self, tokens):
        a, b = tokens[:, 0], tokens[:, 1]
        pre = self.hidden_pre(a, b)
        gate_pre = self.hidden_pre(a, b, gate=True) if self.activation == "bilinear" else None
        logits = _neurons(pre, gate_pre, self.activation) @ self.W_out.T
        return logits if self.b_out is None else logits + self.b_out


def build(settings, weights):
    """The torch module of ``settings["model"]`` with the JAX weights."""
    m = settings["model"]
    if m["family"] == "superposition":
        return ToyModel(weights, m["kind"])
    if m["family"] == "grokking" and m["arch"] == "transformer":
        return Transformer(weights, m["activation"], m["alpha"])
    if m["family"] == "grokking" and m["arch"] == "mlp":
        return EmbedMLP(weights, m["embed"], m["activation"])
    raise ValueError(f"no torch port of {m}")


def _nll(logits, labels, precision):
    # toylab/tasks/losses.py: the float64 path computes log-softmax in float64
    x = logits.double() if precision == "float64" else logits
    return -torch.log_softmax(x, dim=-1).gather(-1, labels[..., None])[..., 0]


def row_losses(settings, model, data, rows):
    """(len(rows),) per-row losses: their mean is the JAX loss on ``data[rows]``.

    superposition: a row is a batch of examples, its loss the importance-weighted squared
    error averaged over the batch and the features (toylab/families/superposition.py).
    grokking: rows holding a batch each (tokens (R, N, 3)) give that batch's masked mean; rows
    that are single examples (tokens (R, 3)) give w_i·loss_i·B/max(Σ_B w, 1), whose mean over
    the B rows is the masked mean the JAX loss takes over them (toylab/families/grokking.py).
    """
    m = settings["model"]
    if m["family"] == "superposition":
        x = data["x"][rows]
        target = x.abs() if m["kind"] == "abs" else x
        importance = torch.tensor(m["importance"], dtype=x.dtype)
        return (importance * (target - model(x)) ** 2).mean(dim=(-2, -1))
    tokens, labels, w = data["tokens"][rows], data["labels"][rows], data["mask"][rows]
    lead = tokens.shape[:-1]
    logits = model(tokens.reshape(-1, tokens.shape[-1])).reshape(*lead, -1)
    if m["loss"] == "cross_entropy":
        per = _nll(logits, labels, m["loss_precision"])
    else:
        onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        per = ((logits - onehot) ** 2).sum(-1)
    w = w.to(per.dtype)
    if tokens.ndim == 3:  # rows of batches: each row's masked mean
        out = (w * per).sum(-1) / w.sum(-1).clamp(min=1.0)
    else:  # rows of examples
        out = w * per * (len(rows) / w.sum().clamp(min=1.0))
    return out.float()


def full_loss(settings, model, data):
    """The loss on every row (the JAX side's L(w*)), as a float."""
    n = len(next(iter(data.values())))
    with torch.no_grad():
        return float(row_losses(settings, model, data, torch.arange(n)).double().mean())


def prepare(path):
    """(settings, model, data, arrays, header) for one .npz: the torch model at w*, its data,
    and what every peer script reports first — the torch loss at w* beside the JAX one, the
    torch version and threads, the parameter count."""
    settings, weights, arrays = load(path)
    model = build(settings, weights)
    data = to_torch(arrays)
    header = {"init_loss": full_loss(settings, model, data), "init_loss_jax": settings.get("init_loss_jax"),
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "parameters": sum(p.numel() for p in model.parameters())}
    return settings, model, data, arrays, header
