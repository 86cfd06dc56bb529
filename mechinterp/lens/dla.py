"""Direct logit attribution (DLA): what each component writes straight into a logit.

The final residual is a sum of component outputs: the token (and absolute positional)
embedding, every head's ``z @ W_O``, every attention output bias and every MLP's output.
Freeze the final norm's scale at its value in the clean run and the norm becomes linear,
so the target ``logit(answer) [- logit(wrong)]`` splits exactly::

    target = Σ_c  (c · e) / scale  +  constant,   e = centre(w_ln ⊙ (W_U[:, answer] - W_U[:, wrong]))

with ``centre`` only for LayerNorm (``LN``/``LNPre``), ``w_ln`` only when the norm weight is
not folded, and ``constant = b_U[answer] - b_U[wrong] + b_ln · (W_U[:, answer] - W_U[:, wrong])``.
Heads are read from ``hook_z`` (``W_O`` is applied to the direction, not to every head's
``d_model`` output, so no ``hook_result`` is materialised); with ``neurons=True`` each MLP is
split into its neurons (``mlp_post ⊙ (W_out @ e)``) plus its output bias.

It is *direct* effect only: a head whose output later layers read and amplify gets no
credit here (use patching for total effects).

Example:
    >>> import mechinterp
    >>> from mechinterp.lens import direct_logit_attribution
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> res = direct_logit_attribution(model, ["The capital of France is"], "Paris", wrong="Rome")
    >>> bool(torch.allclose(res.total(), res.target, atol=1e-4))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError
from mechinterp.lens.readout import answer_ids, as_cache, check_linear_head, norm_bias
from mechinterp.lens.results import DLAResult
from mechinterp.core.validation import check_count, check_token_ids

__all__ = ["direct_logit_attribution", "dla_sites"]


def dla_sites(model: Any, neurons: bool = False) -> list[str]:
    """The hook names DLA reads (fetch them with the lens's sites for one shared pass)."""
    cfg = model.cfg
    sites = ["hook_embed"]
    if cfg.positional_embedding_type == "standard":
        sites.append("hook_pos_embed")
    for l in range(cfg.n_layers):
        sites.append(f"blocks.{l}.attn.hook_z")
        if not cfg.attn_only:
            sites.append(f"blocks.{l}.mlp.hook_post" if neurons else f"blocks.{l}.hook_mlp_out")
    if cfg.normalization_type is not None:
        sites.append("ln_final.hook_scale")
    sites.append(f"blocks.{cfg.n_layers - 1}.hook_resid_post")
    return sites


def _check_model(model: Any, neurons: bool) -> None:
    cfg = model.cfg
    check_linear_head(model)
    if getattr(cfg, "use_normalization_before_and_after", False):
        raise MechinterpError("This model normalises each sublayer's output (post-norms): head outputs are not z @ W_O, "
                              "so DLA's exact split does not apply.")
    if cfg.positional_embedding_type == "shortformer":
        raise MechinterpError("Shortformer models add positions inside attention: DLA's split does not apply.")
    if neurons and getattr(cfg, "num_experts", None):
        raise MechinterpError("neurons=True is not supported for mixture-of-experts MLPs; use neurons=False.")


@runs_synced
def direct_logit_attribution(
    model: Any,
    inputs: Any,
    answers: Sequence[str] | Tensor | str,
    *,
    wrong: Sequence[str] | Tensor | str | None = None,
    neurons: bool = False,
    positions: Any = "last",
    batch_size: int = 32,
) -> DLAResult:
    """Split ``logit(answer)`` (or ``logit(answer) - logit(wrong)``) into direct contributions.

    Args:
        model: a ``HookedTransformer``.
        inputs: prompts, or a :class:`~mechinterp.core.cache.SharedCache` of this model with
            positions ``"last"``, ``"all"`` or a list of indices.
        answers: one answer per prompt (strings or ids), or one for all.
        wrong: the other side of a logit difference (same forms), or ``None``.
        neurons: split each MLP into its neurons plus its output bias.
        positions: positions when ``inputs`` are prompts (``"last"`` by default; with
            ``"all"`` every position is attributed to the same answer token).
        batch_size: prompts per forward pass when a cache is built.

    Returns:
        A :class:`DLAResult` whose ``scores.sum(0) + constant`` equals ``target``.
    """
    check_count(batch_size, "batch_size")
    if isinstance(inputs, Tensor):
        check_token_ids(model, inputs, "inputs")
    _check_model(model, neurons)
    cfg = model.cfg
    cache = as_cache(model, inputs, positions, batch_size)
    if isinstance(cache.positions, Tensor) and cache.positions.is_floating_point():
        raise MechinterpError("DLA needs one frozen norm scale per position: build the cache without position weights.")
    sites = dla_sites(model, neurons)
    cache.fetch(sites)
    n = len(cache)
    ans = answer_ids(model, answers, n)
    bad = answer_ids(model, wrong, n) if wrong is not None else None
    dev = cfg.device
    direction, constant = logit_direction(model, ans, bad)
    unembed_bias = constant.clone()
    constant = constant + direction @ norm_bias(model).float()
    e = effective_direction(model, direction)  # [n, d_model]

    final = cache.get(sites[-1])  # [n, *pos, d_model]
    extra = final.ndim - 2  # 0 (one position per prompt) or 1
    e_b = e.view(n, *([1] * extra), -1)
    scale = cache.get("ln_final.hook_scale").float().to(dev) if cfg.normalization_type is not None else torch.ones(*final.shape[:-1], 1, device=dev)

    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # padding positions (zeroed in the cache)

    def read(x: Tensor) -> Tensor:  # x [n, *pos, d_model] -> [n, *pos]
        return (x.float().to(dev) * e_b).sum(-1) / scale[..., 0]

    def bias_term(b: Tensor) -> Tensor:  # a bias added at every position: (b . e) / scale
        return (e @ b.detach().float()).view(n, *([1] * extra)) / scale[..., 0]

    labels: list[str] = ["embed"]
    scores: list[Tensor] = [read(cache.get("hook_embed"))]
    if cfg.positional_embedding_type == "standard":
        labels.append("pos_embed")
        scores.append(read(cache.get("hook_pos_embed")))
    for l in range(cfg.n_layers):
        block = model.blocks[l]
        w_o = block.attn.W_O.detach().float()  # [head, d_head, d_model]
        we = torch.einsum("hdm,nm->nhd", w_o, e)  # [n, head, d_head]
        z = cache.get(f"blocks.{l}.attn.hook_z").float().to(dev)  # [n, *pos, head, d_head]
        heads = torch.einsum("n...hd,nhd->n...h", z, we) / scale  # [n, *pos, head]
        for h in range(cfg.n_heads):
            labels.append(f"L{l}H{h}")
            scores.append(heads[..., h])
        labels.append(f"L{l} attn bias")
        scores.append(bias_term(block.attn.b_O))
        if cfg.attn_only:
            continue
        if neurons:
            w_out = block.mlp.W_out.detach().float()  # [d_mlp, d_model]
            post = cache.get(f"blocks.{l}.mlp.hook_post").float().to(dev)  # [n, *pos, d_mlp]
            per = post * (e @ w_out.T).view(n, *([1] * extra), -1) / scale  # [n, *pos, d_mlp]
            labels += [f"L{l}N{i}" for i in range(per.shape[-1])]
            scores += list(per.movedim(-1, 0))
            labels.append(f"L{l} mlp bias")
            scores.append(bias_term(block.mlp.b_out))
        else:
            labels.append(f"MLP{l}")
            scores.append(read(cache.get(f"blocks.{l}.hook_mlp_out")))

    stacked = torch.stack(scores).cpu()
    constant_b = constant.view(n, *([1] * extra)).expand(*final.shape[:-1]).cpu()
    target = _target(model, final, direction, unembed_bias)
    mask = cache.attention_mask.bool() if cache.positions == "all" else None
    if mask is not None:
        stacked = stacked * mask
        constant_b = constant_b * mask
        target = target * mask
    label = target_label(model, ans, bad)
    return DLAResult(components=labels, scores=stacked, constant=constant_b, target=target, target_label=label,
                     n_layers=cfg.n_layers, n_heads=cfg.n_heads, mask=mask)


def logit_direction(model: Any, ans: Tensor, bad: Tensor | None) -> tuple[Float[Tensor, "n d_model"], Float[Tensor, " n"]]:
    """``(W_U[:, ans] - W_U[:, bad], b_U[ans] - b_U[bad])`` per prompt (without ``bad``: the answer's own column)."""
    dev = model.cfg.device
    w_u, b_u = model.W_U.detach(), model.b_U.detach()
    direction, bias = w_u[:, ans.to(dev)].T.float(), b_u[ans.to(dev)].float()  # [n, d_model], [n]
    if bad is not None:
        direction = direction - w_u[:, bad.to(dev)].T.float()
        bias = bias - b_u[bad.to(dev)].float()
    return direction, bias


def effective_direction(model: Any, direction: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_model"]:
    """``e`` with ``(x · e) / scale == norm_linear(x) · direction`` for every ``x``."""
    if model.cfg.normalization_type is None:
        return direction
    # norm_linear is linear in x and its adjoint is: weight, then centring (centring is symmetric).
    e = direction * model.ln_final.w.detach().float() if model.cfg.normalization_type in ("LN", "RMS") else direction
    if model.cfg.normalization_type in ("LN", "LNPre"):
        e = e - e.mean(-1, keepdim=True)
    return e


def _target(model: Any, final: Tensor, direction: Tensor, bias: Tensor) -> Tensor:
    """The model's own target value at each cached position (final norm live, as in the forward pass)."""
    n = final.shape[0]
    dev = model.cfg.device
    with torch.inference_mode():
        normed = model.ln_final(final.to(dev)) if model.cfg.normalization_type is not None else final.to(dev)
        value = (normed.float() * direction.view(n, *([1] * (final.ndim - 2)), -1)).sum(-1)
    return (value + bias.view(n, *([1] * (final.ndim - 2)))).cpu()


def target_label(model: Any, ans: Tensor, bad: Tensor | None) -> str:
    def name(ids: Tensor, several: str) -> str:
        uniq = torch.unique(ids)
        if len(uniq) == 1 and model.tokenizer is not None:
            return repr(model.to_single_str_token(int(uniq[0])))
        return several if len(uniq) > 1 else str(int(uniq[0]))

    text = f"logit({name(ans, 'answer')})"
    return text if bad is None else f"{text} - logit({name(bad, 'wrong')})"


def check_exact(result: DLAResult, atol: float = 1e-4) -> float:
    """The largest gap between ``result.total()`` and ``result.target`` (raises above ``atol``)."""
    gap = float((result.total() - result.target).abs().max())
    if gap > atol:
        raise MechinterpError(f"DLA components miss the target by {gap:.3g} (> {atol}).")
    return gap
