"""Feature patching and ablation: patch chosen SAE latents, many latents in few stacked passes.

With an SAE spliced at its site and the error term kept, the forward pass is the model's
own. Patching latent ``i`` (at some positions) from the base run's value ``f_i`` to the
source's ``f_i'`` then changes the site's output by exactly ``(f_i' - f_i) · W_dec[i]``:
the decoder is linear and the error term is held at the base run's value. So every patched
run is one additive :class:`~mechinterp.core.intervention.Intervention` at the SAE's output
hook, and ``V`` of them run as one ``[V * batch, ...]`` pass that starts at the site's block
from the base run's residual stream (the prefix is shared), chunked to a memory budget.
A latent that is equal in both runs (most are zero in both: SAEs are sparse) writes
nothing, and is not run: its effect is the base run's.

Conventions are activation patching's (:func:`~mechinterp.patching.activation_patch`):
denoising (default) runs the corrupted prompts and patches in clean latents; noising the
other way; ``ablation="zero" | "mean" | "resample"`` runs the clean prompts. With
``normalise=True`` effects are ``(m - m_base) / (m_source - m_base)`` (0 = base run,
1 = the run patched from). The result is patching's :class:`~mechinterp.patching.PatchResult`
with dims ``("latent",)``, ``("latent", "pos")`` or ``("set",)``.

Example:
    >>> import mechinterp
    >>> from mechinterp.dictionary import SparseAutoencoder, feature_patch
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=8)
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.1.hook_resid_post")
    >>> result = feature_patch(model, sae, task, latents=range(8))
    >>> result.dims, result.values.shape
    (('latent',), torch.Size([8]))
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from mechinterp.core import metrics
from mechinterp.core.intervention import Intervention
from mechinterp.core.precision import runs_synced
from mechinterp.core.sites import layer_of
from mechinterp.core.storage import parse_bytes
from mechinterp.core.validation import check_count
from mechinterp.dictionary.feature_inputs import LatentSources, latent_sources, metric_values
from mechinterp.dictionary.latents import check_latents
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.patching import PatchResult, prepare_patch_inputs

__all__ = ["feature_patch", "run_latent_deltas", "start_hook", "BY"]

BY = ("latent", "latent_pos", "set")


def _positions(positions: Any, n_pos: int) -> list[int]:
    if positions is None:
        return list(range(n_pos))
    items = [positions] if isinstance(positions, numbers.Integral) else list(positions)
    out = []
    for p in items:
        if isinstance(p, bool) or not isinstance(p, numbers.Integral) or not -n_pos <= p < n_pos:
            raise MechinterpError(f"positions: {p!r} is not a position of these {n_pos}-token prompts.")
        out.append(int(p) % n_pos)
    if not out:
        raise MechinterpError("positions is empty: select at least one position (None selects all).")
    return sorted(set(out))


def run_latent_deltas(
    model: Any,
    tokens: Tensor,
    hook: str,
    deltas: Sequence[Tensor],
    metric: Any,
    *,
    chunk_size: int | None = None,
    memory_budget: int | str = "1GB",
    resid: Tensor | None = None,
) -> Tensor:
    """The metric of ``len(deltas)`` runs on ``tokens``, run ``v`` adding ``deltas[v]`` at ``hook``.

    Each delta is ``[batch, pos, d]`` (what an edit of latents writes: ``Δf @ W_dec``). The
    runs are stacked along the batch and start at ``hook``'s block from the unedited run's
    residual stream there (``resid``: :func:`start_hook`'s activation, if already at hand).
    Returns ``[len(deltas), batch]``.
    """
    batch, n_pos = tokens.shape
    name = start_hook(hook) if _can_start_inside(model) else None
    start = layer_of(hook) if name is not None else None  # None: every run starts from the tokens
    if start is not None and resid is None:
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=name, stop_at_layer=start)
        resid = cache[name]
    if chunk_size is None:
        cfg = model.cfg
        per_row = n_pos * (cfg.d_model * 16 + cfg.d_vocab + cfg.n_heads * n_pos * 2) * 4
        chunk_size = max(1, int(parse_bytes(memory_budget) // max(1, per_row * batch)))
    out = torch.empty(len(deltas), batch)
    for lo in range(0, len(deltas), chunk_size):
        chunk = deltas[lo : lo + chunk_size]
        v = len(chunk)
        value = torch.cat(list(chunk)).to(model.cfg.device)  # [v * batch, pos, d]
        edit = Intervention(hook, None, value, mode="add")
        with torch.no_grad(), model.hooks(fwd_hooks=[edit.fwd_hook()]):
            if start is None:
                logits = model(tokens.repeat(v, 1))
            else:
                logits = model(resid.repeat(v, 1, 1), start_at_layer=start)
        logits = logits.view(v, batch, *logits.shape[1:])
        for j in range(v):
            out[lo + j] = metric_values(metric, logits[j], batch).cpu()
    return out


def _can_start_inside(model: Any) -> bool:
    """A run may start at a block from the residual stream alone (shortformer models add positions inside attention)."""
    return model.cfg.positional_embedding_type != "shortformer"


def start_hook(hook: str) -> str | None:
    """The hook whose activation the patched runs start from: block ``L``'s input, read as block ``L - 1``'s
    ``resid_post`` (``None`` when ``hook`` is in block 0 or outside the blocks: the runs start from the tokens)."""
    layer = layer_of(hook)
    return f"blocks.{layer - 1}.hook_resid_post" if layer is not None and layer > 0 else None


@runs_synced
def feature_patch(
    model: Any,
    sae: SparseAutoencoder,
    clean: Any,
    corrupted: Any = None,
    metric: Any = None,
    *,
    latents: Any = None,
    by: Literal["latent", "latent_pos", "set"] = "latent",
    positions: int | Sequence[int] | None = None,
    direction: Literal["denoising", "noising"] = "denoising",
    ablation: Literal["zero", "mean", "resample"] | None = None,
    answers: Any = None,
    normalise: bool = True,
    hook_name: str | None = None,
    chunk_size: int | None = None,
    memory_budget: int | str = "1GB",
    seed: int = 0,
) -> PatchResult:
    """Patch (or ablate) SAE latents one at a time, per position, or as one set, and measure the metric.

    Args:
        model: a ``HookedTransformer``.
        sae: the SAE (or transcoder) spliced at its site, error term kept.
        clean: clean prompts, token ids ``[batch, pos]`` or a ``Task``.
        corrupted: corrupted prompts aligned with ``clean`` (from the task if ``clean`` is one;
            not needed for ablations).
        metric: ``logits -> [batch]``, a name (``"logit_diff"``...) with ``answers``, or the task's.
        latents: which latents (indices; ``None``: all ``d_sae``).
        by: ``"latent"`` (each latent at ``positions``), ``"latent_pos"`` (each latent at each
            position alone) or ``"set"`` (all chosen latents at ``positions`` together: one run).
        positions: positions patched (``None``: every position).
        direction: ``"denoising"`` or ``"noising"`` (see :mod:`mechinterp.patching`).
        ablation: ``"zero"``, ``"mean"`` or ``"resample"`` instead of patching from corrupted prompts.
        answers: answers of a named metric.
        normalise: report ``(m - m_base) / (m_source - m_base)``.
        hook_name: the SAE's hook when it does not name one.
        chunk_size: patched runs per stacked pass (default: fit ``memory_budget``).
        memory_budget: bytes (or ``"512MB"``) one stacked pass may use (an estimate).
        seed: the resample pairing.

    Returns:
        A :class:`~mechinterp.patching.PatchResult` (``method="feature"``).
    """
    if by not in BY:
        raise MechinterpError(f"by must be one of {BY}, got {by!r}.")
    check_count(chunk_size, "chunk_size", none_ok=True)
    parse_bytes(memory_budget)
    inputs = prepare_patch_inputs(model, clean, corrupted, metric, answers=answers, need_corrupted=ablation is None)
    chosen = check_latents(sae, latents)
    src = latent_sources(model, sae, inputs, direction=direction, ablation=ablation, seed=seed, hook_names=hook_name,
                         keep=lambda hooks: [h for h in [start_hook(hooks[0][1])] if h is not None])
    hook = src.hooks[0][1]
    batch, n_pos = src.base_tokens.shape
    pos = _positions(positions, n_pos)
    pos_mask = torch.zeros(n_pos, dtype=torch.bool, device=src.base_tokens.device)
    pos_mask[pos] = True
    diff = src.source[0].latents - src.base[0].latents  # [batch, pos, d_sae]
    w_dec = sae.W_dec.detach()

    if by == "set":
        masks = [(chosen, pos_mask)]
    elif by == "latent":
        masks = [([i], pos_mask) for i in chosen]
    else:
        masks = []
        for i in chosen:
            for p in pos:
                one = torch.zeros_like(pos_mask)
                one[p] = True
                masks.append(([i], one))
    # A patch whose latents are equal in both runs writes nothing: the base run, not run.
    changed = diff.ne(0).any(0)  # [pos, d_sae]
    run_ids = [k for k, (ids, mask) in enumerate(masks) if bool(changed[mask][:, ids].any())]

    def delta(k: int) -> Tensor:  # built per chunk: [batch, pos, d_out]
        ids, mask = masks[k]
        return ((diff[..., ids] * mask[None, :, None].to(diff.dtype)) @ w_dec[ids]).to(model.cfg.dtype)

    deltas = _Lazy(delta, run_ids)
    base_value = float(src.base_metric.mean())
    raw = torch.full((len(masks),), base_value, dtype=torch.float32)
    if deltas:
        start = start_hook(hook)
        per_prompt = run_latent_deltas(model, src.base_tokens, hook, deltas, inputs.metric, chunk_size=chunk_size,
                                       memory_budget=memory_budget, resid=src.kept[start] if start else None)
        raw[run_ids] = per_prompt.mean(1)
    return _result(raw, by, chosen, pos, inputs, src, hook, base_value, direction, ablation, normalise)


class _Lazy(Sequence):  # type: ignore[type-arg]
    """A sequence whose items are built when read (one chunk's deltas at a time)."""

    def __init__(self, make: Any, keys: list[int]) -> None:
        self.make, self.keys = make, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.make(k) for k in self.keys[index]]
        return self.make(self.keys[index])


def _result(raw: Tensor, by: str, chosen: list[int], pos: list[int], inputs: Any, src: LatentSources, hook: str,
            base_value: float, direction: str, ablation: str | None, normalise: bool) -> PatchResult:
    pos_labels = [f"{p}:{inputs.str_tokens[p]}" if p < len(inputs.str_tokens) else str(p) for p in pos]
    if by == "set":
        dims, labels = ("set",), {"set": [f"{len(chosen)} latents x {len(pos)} positions"]}
    elif by == "latent":
        dims, labels = ("latent",), {"latent": [str(i) for i in chosen]}
    else:
        raw = raw.view(len(chosen), len(pos))
        dims, labels = ("latent", "pos"), {"latent": [str(i) for i in chosen], "pos": pos_labels}
    target = src.target
    do_norm = normalise and target is not None
    if do_norm and abs(target - base_value) < 1e-8:  # type: ignore[operator]
        raise NonFiniteError(
            f"The base and target runs have the same mean metric ({base_value:.4g}), so normalised effects are "
            "undefined: the corruption does not change the metric. Pick another corruption or pass normalise=False."
        )
    values = metrics.normalise(raw, clean=target, corrupted=base_value) if do_norm else raw.clone()  # type: ignore[arg-type]
    return PatchResult(values=values.float(), raw=raw, dims=dims, labels=labels, site=f"sae:{hook}", method="feature",
                       direction="ablation" if ablation else direction, ablation=ablation, metric=inputs.metric_name,
                       normalised=do_norm, base_value=base_value, target_value=target, tokens=list(inputs.str_tokens))
