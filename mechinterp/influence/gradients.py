"""Per-example gradients of a HookedTransformer, one ``vmap(grad)`` per batch (``torch.func``).

The parameters that influence methods differentiate are chosen by :func:`select_params`:
by default the weight matrices of attention (``W_Q W_K W_V W_O``), the MLPs (``W_in
W_out``, ``W_gate``) and the unembedding (``W_U``) — the layers that EK-FAC models with
Kronecker factors (as kronfluence covers ``nn.Linear`` layers), so every method scores the
same parameters. ``"all"`` takes every trainable parameter.

``torch.func.functional_call`` runs the model with the parameters as inputs, so hooks are
never added; ``vmap`` over the batch gives each sequence's own gradient in one call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.func import functional_call, grad, vjp, vmap

from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.core.validation import check_count, check_token_ids

__all__ = ["select_params", "train_loss", "per_example_grads", "query_grads", "per_token_grads", "MATRIX_PATTERN"]

MATRIX_PATTERN = re.compile(r"^(blocks\.\d+\.(attn\.(W_Q|W_K|W_V|W_O|_W_K|_W_V)|mlp\.(W_in|W_out|W_gate))|unembed\.W_U)$")


def select_params(model: Any, params: str | Sequence[str] | None = "matrices") -> list[str]:
    """Names of the parameters to differentiate.

    Args:
        model: a ``HookedTransformer``.
        params: ``"matrices"`` (default: attention, MLP and unembedding weight matrices),
            ``"all"`` (every parameter that requires grad), or a list of names or name
            prefixes (``"blocks.3"`` takes every parameter of block 3).

    Raises:
        MechinterpError: a name or prefix that matches no parameter.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if params is None or params == "matrices":
        chosen = [n for n in names if MATRIX_PATTERN.match(n)]
    elif params == "all":
        chosen = names
    elif isinstance(params, str):
        raise MechinterpError(f"params={params!r} is not known: pass 'matrices', 'all' or a list of parameter names/prefixes.")
    else:
        chosen = []
        for want in params:
            hits = [n for n in names if n == want or n.startswith(want + ".")]
            if not hits:
                raise MechinterpError(
                    f"params: No parameter is named or starts with {want!r}; names look like {names[:3]} (see model.named_parameters())."
                )
            chosen += [h for h in hits if h not in chosen]
    if not chosen:
        raise MechinterpError("No parameters selected: pass params='all' or a list of parameter names.")
    return chosen


def train_loss(logits: Float[Tensor, "pos d_vocab"], tokens: Int[Tensor, " pos"], mask: Float[Tensor, " pos_minus_1"]) -> Tensor:
    """One sequence's training loss: the summed next-token loss over real tokens."""
    logp = logits[:-1].log_softmax(-1).gather(-1, tokens[1:, None])[:, 0]
    return -(logp * mask).sum()


def _params(model: Any, names: Sequence[str]) -> dict[str, Tensor]:
    own = dict(model.named_parameters())
    return {n: own[n].detach() for n in names}


@runs_synced
def per_example_grads(
    model: Any, names: Sequence[str], tokens: Int[Tensor, "batch pos"], mask: Float[Tensor, "batch pos_minus_1"]
) -> dict[str, Tensor]:
    """Each sequence's gradient of :func:`train_loss`: ``{name: [batch, *param.shape]}``."""
    check_token_ids(model, tokens, "tokens")
    params = _params(model, names)

    def loss(p: dict[str, Tensor], toks: Tensor, m: Tensor) -> Tensor:
        logits = functional_call(model, p, (toks[None],))[0]  # [pos, d_vocab]
        return train_loss(logits, toks, m)

    dev = next(iter(params.values())).device
    return vmap(grad(loss), in_dims=(None, 0, 0))(params, tokens.to(dev), mask.to(dev))


@runs_synced
def query_grads(model: Any, names: Sequence[str], tokens: Int[Tensor, " pos"], measure: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
    """The gradient of a query's measurement ``m(logits)``: ``{name: param.shape}``."""
    check_token_ids(model, tokens, "tokens")
    params = _params(model, names)
    dev = next(iter(params.values())).device

    def m(p: dict[str, Tensor]) -> Tensor:
        out = measure(functional_call(model, p, (tokens.to(dev)[None],))[0])
        if not torch.isfinite(out):
            from mechinterp.errors import NonFiniteError

            raise NonFiniteError("The query's measurement is not finite; check the target and the model's logits.")
        return out

    return grad(m)(params)


@runs_synced
def per_token_grads(model: Any, names: Sequence[str], tokens: Int[Tensor, " pos"], length: int) -> dict[str, Tensor]:
    """Gradients of each next-token loss of one sequence: ``{name: [length - 1, *shape]}``.

    Row ``t`` is the gradient of the loss of predicting token ``t + 1``; the rows sum to the
    sequence's :func:`per_example_grads` gradient. One forward pass (``torch.func.vjp``) and
    a backward batched over positions, which only reaches as deep as ``names`` go.
    """
    check_token_ids(model, tokens, "tokens")
    check_count(length, "length", minimum=2, hint="(a sequence needs two tokens for one next-token loss.)")
    if length > tokens.shape[-1]:
        raise MechinterpError(f"length={length} is longer than the sequence ({tokens.shape[-1]} tokens).")
    params = _params(model, names)
    dev = next(iter(params.values())).device
    toks = tokens[:length].to(dev)

    def losses(p: dict[str, Tensor]) -> Tensor:  # [length - 1] next-token losses
        logits = functional_call(model, p, (toks[None],))[0]
        return -logits[:-1].log_softmax(-1).gather(-1, toks[1:, None])[:, 0]

    # one forward; the backward is batched over one-hot cotangents (a row per position)
    out, pullback = vjp(losses, params)
    return vmap(lambda onehot: pullback(onehot)[0])(torch.eye(length - 1, device=dev, dtype=out.dtype))
