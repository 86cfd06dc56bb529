"""Direct logit attribution of SAE latents, and each latent's logit effects.

An SAE at a site that writes into the residual stream (``resid_*``, ``attn_out``,
``mlp_out``; a transcoder's output) splits the site's output exactly::

    x = Σ_i f_i W_dec[i] + b_dec + error

Freeze the final norm's scale at the clean run (:func:`mechinterp.lens.norm_linear`) and the
logit (difference) read from the final residual is linear in ``x``, so latent ``i`` writes

    DLA_i = f_i · (norm_linear(W_dec[i]) · d) / scale,    d = W_U[:, answer] - W_U[:, wrong]

and the latents, the bias and the error term sum exactly to the site's direct contribution
(for an ``mlp_out`` SAE, the ``MLP{l}`` row of :func:`mechinterp.lens.direct_logit_attribution`).
Like every DLA it is the *direct* path only: what later layers make of the latent is not in it.

:func:`logit_effects` reads the decoder direction alone (``norm_linear(W_dec[i]) @ W_U``
with unit scale): the tokens a latent promotes and suppresses, the dashboard's logit table.

Example:
    >>> import mechinterp, torch
    >>> from mechinterp.dictionary import SparseAutoencoder, latent_dla, logit_effects
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.1.hook_mlp_out")
    >>> res = latent_dla(model, sae, ["The capital of France is"], "Paris", wrong="Rome")
    >>> bool(torch.allclose(res.total(), res.site_total, atol=1e-4))
    True
    >>> logit_effects(model, sae, [0, 1], k=3).top_values.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.precision import runs_synced
from mechinterp.core.tokens import answer_tokens
from mechinterp.core.validation import check_count, check_ids, check_token_ids
from mechinterp.dictionary.feature_results import LatentDLA, LogitEffects
from mechinterp.dictionary.latents import check_latents, sae_hooks, site_width
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.lens import norm_linear

__all__ = ["latent_dla", "logit_effects"]


def _residual_output(model: Any, sae: SparseAutoencoder, hook_name: str | None) -> tuple[str, str]:
    hook_in, hook_out = sae_hooks(model, sae, hook_name)
    if site_width(model, hook_out) != model.cfg.d_model or hook_out.endswith(("hook_mlp_in", "hook_attn_in", "ln_final.hook_normalized")):
        raise MechinterpError(f"The SAE writes {hook_out!r}, which is not added to the residual stream: latent DLA needs an SAE "
                              "(or transcoder output) at resid_pre/resid_mid/resid_post, attn_out or mlp_out.")
    return hook_in, hook_out


def _check_head(model: Any) -> None:
    cap = getattr(model.cfg, "output_logits_soft_cap", -1.0)
    if cap is not None and cap > 0:
        raise MechinterpError(f"This model caps its logits (output_logits_soft_cap={cap}): a logit is not a sum of direct "
                              "contributions. Set model.cfg.output_logits_soft_cap = -1 on a copy to attribute the pre-cap logit.")


def _ids(model: Any, answers: Any, n: int, name: str) -> Tensor:
    if isinstance(answers, str) or (isinstance(answers, (list, tuple)) and answers and isinstance(answers[0], str)):
        ids = answer_tokens(model, [answers] if isinstance(answers, str) else list(answers))
    else:
        ids = check_ids(answers, model.cfg.d_vocab_out, name)
    ids = torch.as_tensor(ids).long().flatten()
    if ids.numel() == 1:
        ids = ids.expand(n)
    if ids.shape != (n,):
        raise ShapeMismatchError(f"{name}: give one answer per prompt ({n}) or one for all, got {ids.numel()}.")
    return ids


def _unit(model: Any, x: Tensor) -> Tensor:
    """``norm_linear`` with unit scale: centring (LayerNorm) and the norm's weight, no division."""
    return norm_linear(model, x, torch.ones(1, device=x.device, dtype=x.dtype))


@runs_synced
def latent_dla(
    model: Any,
    sae: SparseAutoencoder,
    inputs: Any,
    answers: Any,
    *,
    wrong: Any = None,
    latents: Any = None,
    positions: Any = "last",
    batch_size: int = 32,
    hook_name: str | None = None,
) -> LatentDLA:
    """Each latent's direct contribution to ``logit(answer)`` (minus ``logit(wrong)``).

    Args:
        model: a ``HookedTransformer``.
        sae: an SAE whose output is added to the residual stream.
        inputs: prompts, or a :class:`~mechinterp.core.cache.SharedCache` of this model.
        answers: one answer per prompt (strings or ids), or one for all.
        wrong: the other side of a logit difference, or ``None``.
        latents: which latents to report (``None``: all; the rest are summed in ``other``).
        positions: positions when ``inputs`` are prompts (``"last"``; ``"all"`` attributes every
            position to the same answer).
        batch_size: prompts per forward pass when a cache is built.
        hook_name: the SAE's hook when it does not name one.

    Returns:
        A :class:`LatentDLA` whose parts sum to ``site_total`` exactly (to float rounding).
    """
    check_count(batch_size, "batch_size")
    if isinstance(inputs, Tensor):
        check_token_ids(model, inputs, "inputs")
    _check_head(model)
    hook_in, hook_out = _residual_output(model, sae, hook_name)
    chosen = check_latents(sae, latents)
    if isinstance(inputs, SharedCache):
        if inputs.model is not model:
            raise MechinterpError("inputs: the SharedCache was built for another model; build one for this model.")
        cache = inputs
    else:
        cache = SharedCache(model, inputs, positions=positions, batch_size=batch_size, progress=False)
    norm = model.cfg.normalization_type is not None
    cache.fetch(sorted({hook_in, hook_out} | ({"ln_final.hook_scale"} if norm else set())))
    n = len(cache)
    d = model.W_U.detach()[:, _ids(model, answers, n, "answers").to(model.W_U.device)].T.float()  # [n, d_model]
    label = f"logit({_names(model, answers, 'correct answer')})"
    if wrong is not None:
        d = d - model.W_U.detach()[:, _ids(model, wrong, n, "wrong").to(model.W_U.device)].T.float()
        label += f" - logit({_names(model, wrong, 'wrong answer')})"
    x_in = cache.get(hook_in).to(sae.W_dec.device)
    x_out = cache.get(hook_out).to(sae.W_dec.device).float()
    extra = x_out.ndim - 2  # 0 (one position per prompt) or 1
    scale = cache.get("ln_final.hook_scale").float().to(x_out.device) if norm else torch.ones(*x_out.shape[:-1], 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))[..., 0]  # padding positions (zeros in the cache)
    d_b = d.to(x_out.device).view(n, *([1] * extra), -1)
    with torch.no_grad():
        f = sae.encode(x_in).float()  # [n, *pos, d_sae]
        per_unit = _unit(model, sae.W_dec.detach().float()) @ d.to(x_out.device).T  # [d_sae, n]
        contrib = f * per_unit.T.reshape(n, *([1] * extra), -1) / scale[..., None]  # [n, *pos, d_sae]
        error = x_out - sae.decode(f.to(sae.W_dec.dtype)).float()

        def read(x: Tensor) -> Tensor:
            return (_unit(model, x) * d_b).sum(-1) / scale

        scores = contrib[..., chosen].movedim(-1, 0)
        other = contrib.sum(-1) - scores.sum(0)
        bias = read(sae.b_dec.detach().float().expand_as(x_out))
        err = read(error)
        total = read(x_out)
    mask = cache.attention_mask.bool().to(total.device) if isinstance(cache.positions, str) and cache.positions == "all" else None
    parts = [scores, other, bias, err, total]
    if mask is not None:
        parts = [p * mask for p in parts]
    return LatentDLA(hook=hook_out, latents=chosen, scores=parts[0].cpu(), other=parts[1].cpu(), bias=parts[2].cpu(),
                     error=parts[3].cpu(), site_total=parts[4].cpu(), target_label=label)


def _names(model: Any, answers: Any, default: str = "answer") -> str:
    """How a label names the answers: the token when there is one for all prompts, else ``default``."""
    if isinstance(answers, (list, tuple)) and len(set(map(str, answers))) == 1:
        answers = answers[0]
    if isinstance(answers, str):
        return repr(answers)
    if isinstance(answers, int) and model.tokenizer is not None:
        return repr(model.to_single_str_token(answers))
    return default


@runs_synced
def logit_effects(model: Any, sae: SparseAutoencoder, latents: Any = None, *, k: int = 10, hook_name: str | None = None) -> LogitEffects:
    """The ``k`` tokens each latent's decoder direction promotes and suppresses most.

    Args:
        model: a ``HookedTransformer``.
        sae: an SAE whose output is added to the residual stream.
        latents: which latents (``None``: all).
        k: tokens per side.
        hook_name: the SAE's hook when it does not name one.

    Returns:
        A :class:`LogitEffects` (values: logits added per unit of the latent, final norm's scale = 1).
    """
    check_count(k, "k")
    _, hook_out = _residual_output(model, sae, hook_name)
    chosen = check_latents(sae, latents)
    k = min(k, model.cfg.d_vocab_out)
    with torch.no_grad():
        w = _unit(model, sae.W_dec.detach()[chosen].float().to(model.W_U.device)) @ model.W_U.detach().float()  # [n, d_vocab]
        top, bottom = w.topk(k, dim=-1), (-w).topk(k, dim=-1)

    def strs(ids: Tensor) -> list[list[str]]:
        if model.tokenizer is None:
            return [[str(int(t)) for t in row] for row in ids]
        return [[model.to_single_str_token(int(t)) for t in row] for row in ids]

    return LogitEffects(hook=hook_out, latents=chosen, top_tokens=strs(top.indices), top_values=top.values.cpu(),
                        bottom_tokens=strs(bottom.indices), bottom_values=-bottom.values.cpu())
