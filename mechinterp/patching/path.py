"""Path patching (Wang et al. 2022, IOI): the effect of senders on receivers *only*.

Activation patching a head measures its total effect, through every later component.
Path patching isolates the paths from *sender* heads to *receiver* inputs:

1. Run the base prompts with the senders' outputs (``hook_z``) taken from the source run
   and **every other head frozen** at its base value (MLPs recomputed unless
   ``freeze_mlps=True``). Record the receivers' inputs: heads' queries, keys or values
   (patching ``hook_q`` is the same as patching the head's query input, since ``q`` is a
   function of that input alone), and/or the final residual stream.
2. Run the base prompts again with only the receivers' inputs patched to the values of
   step 1 (everything else recomputed) and measure the metric. For the final residual
   receiver, the change of step 1 (the direct paths) is added to the final residual.

Base and source follow ``direction`` as in activation patching (denoising: base =
corrupted, source = clean). ``senders=None`` sweeps every head as the sender, one variant
per head, all stacked in the batch.

Grouped-query models: ``k`` / ``v`` receivers are numbered by key/value head (what
``hook_k`` / ``hook_v`` hold); see :func:`parse_receivers`.

Precision: as activation patching (runs in the model's dtype, metrics and means in float32).

Example:
    >>> from mechinterp.patching import path_patch
    >>> r = path_patch(model, task, receivers="resid_final")  # [layer, head]  # doctest: +SKIP
    >>> r = path_patch(model, task, receivers=[(3, 0, "q"), (3, 1, "q")])  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mechinterp.core import metrics
from mechinterp.core.precision import runs_synced
from mechinterp.errors import MechinterpError, UnknownSiteError
from mechinterp.patching.activation import cache_for, check_mode
from mechinterp.patching.engine import Patch, Variant, base_run, collect, run_variants
from mechinterp.patching.inputs import Metric, check_sizes, prepare_patch_inputs, resolve_strategy
from mechinterp.patching.result import PatchResult
from mechinterp.patching.sweeps import site_heads

__all__ = ["path_patch", "parse_receivers"]

Receiver = tuple[int, int, str] | str
_RECEIVER_RE = re.compile(r"^L(\d+)H(\d+)(?:\.([qkv]))?$")
FINAL = "resid_final"


def parse_receivers(model: Any, receivers: Any) -> list[Receiver]:
    """Normalise receivers: ``"resid_final"``, ``(layer, head, "q"|"k"|"v")``, ``(layer, head)``
    (= its q, k and v), or ``"L3H0.q"`` strings; raises on unknown ones.

    On a grouped-query model ``k`` / ``v`` receivers are numbered by key/value head (that is
    what ``hook_k`` / ``hook_v`` hold: one key per group of query heads), and a ``(layer, head)``
    pair (q, k and v of one head) raises, since the head shares its keys and values."""
    items = [receivers] if isinstance(receivers, str) or (isinstance(receivers, tuple) and len(receivers) in (2, 3) and isinstance(receivers[0], int)) else list(receivers)
    if not items:
        raise MechinterpError("No receivers: pass 'resid_final' and/or heads' inputs like (layer, head, 'q').")
    out: list[Receiver] = []
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    for item in items:
        if item == FINAL:
            out.append(FINAL)
            continue
        if isinstance(item, str):
            match = _RECEIVER_RE.match(item)
            if not match:
                raise UnknownSiteError(f"Unknown receiver {item!r}: use 'resid_final', 'L<layer>H<head>.q|k|v' or (layer, head, 'q').")
            item = (int(match[1]), int(match[2])) + ((match[3],) if match[3] else ())
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise UnknownSiteError(f"Unknown receiver {item!r}: use 'resid_final' or (layer, head, 'q'|'k'|'v').")
        layer, head = int(item[0]), int(item[1])
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise UnknownSiteError(f"Receiver head L{layer}H{head} does not exist: the model has {n_layers} layers of {n_heads} heads.")
        kinds = [item[2]] if len(item) == 3 else ["q", "k", "v"]
        for kind in kinds:
            if kind not in ("q", "k", "v"):
                raise UnknownSiteError(f"Receiver input {kind!r} of L{layer}H{head} must be 'q', 'k' or 'v'.")
            n_kv = site_heads(model, kind)
            if n_kv != n_heads and (len(item) == 2 or head >= n_kv):
                raise UnknownSiteError(
                    f"Receiver L{layer}H{head}.{kind}: this model shares keys and values among {n_heads // n_kv} query "
                    f"heads (grouped-query attention, {n_kv} key/value heads), so k/v receivers are numbered by "
                    f"key/value head, 0..{n_kv - 1} (query head h reads key/value head h // {n_heads // n_kv}), and "
                    "a (layer, head) pair is ambiguous. Pass (layer, head, 'q') and (layer, kv_head, 'k'|'v'), or "
                    "load the model with ungroup_grouped_query_attention=True to patch each head's keys/values alone."
                )
            if (layer, head, kind) not in out:
                out.append((layer, head, kind))
    return out


def _parse_senders(model: Any, senders: Any) -> list[tuple[int, int]]:
    items = [senders] if isinstance(senders, tuple) and len(senders) == 2 and isinstance(senders[0], int) else list(senders)
    out = []
    for item in items:
        if isinstance(item, str):
            match = _RECEIVER_RE.match(item)
            if not match or match[3]:
                raise UnknownSiteError(f"Unknown sender {item!r}: use 'L<layer>H<head>' or (layer, head).")
            item = (int(match[1]), int(match[2]))
        layer, head = int(item[0]), int(item[1])
        if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
            raise UnknownSiteError(f"Sender head L{layer}H{head} does not exist in this model.")
        out.append((layer, head))
    if not out:
        raise MechinterpError("No senders: pass heads like [(0, 1)], or senders=None to sweep every head.")
    return out


def _head_mask(n_pos: int, n_heads: int, heads: Sequence[int], invert: bool = False) -> Tensor:
    mask = torch.zeros(n_pos, n_heads, 1, dtype=torch.bool)
    mask[:, list(heads)] = True
    return ~mask if invert else mask


@runs_synced
def path_patch(
    model: Any,
    clean: Any,
    corrupted: Any = None,
    metric: Metric | str | None = None,
    *,
    receivers: Any = FINAL,
    senders: Any = None,
    direction: str = "denoising",
    freeze_mlps: bool = False,
    answers: Any = None,
    normalise: bool = True,
    memory_budget: int | str | None = "auto",
    chunk_size: int | None = None,
    strategy: str = "batched",
    cache: Any = None,
    method: str | None = None,
) -> PatchResult:
    """Path-patch sender heads to receiver inputs, everything else held at its base value.

    Args:
        model: a ``HookedTransformer``.
        clean / corrupted / metric / answers: as :func:`~mechinterp.patching.activation_patch`.
        receivers: ``"resid_final"`` and/or head inputs ``(layer, head, "q"|"k"|"v")``,
            ``(layer, head)`` (q, k and v) or ``"L3H0.q"``.
        senders: ``None`` sweeps every head (result ``[layer, head]``); a list of heads
            ``[(layer, head), ...]`` patches them together (a 0-d result).
        direction: ``"denoising"`` (base = corrupted, senders from clean) or ``"noising"``.
        freeze_mlps: also hold MLP outputs at their base values in step 1.
        normalise: 0 = base run, 1 = source run.
        memory_budget / chunk_size: stacking, as in activation patching.
        strategy: ``"batched"`` or ``"naive"`` (one forward per variant and step).
        cache: a :class:`~mechinterp.core.cache.SharedCache` on the clean or corrupted prompts
            (as in :func:`~mechinterp.patching.activation_patch`).
        method: the old name of ``strategy`` (deprecated).

    Returns:
        A :class:`PatchResult` (``method="path"``).

    Example:
        >>> r = path_patch(model, task, receivers="resid_final")  # doctest: +SKIP
        >>> r.top(3)  # the heads acting directly on the logits  # doctest: +SKIP
    """
    strategy = resolve_strategy(strategy, method, "path_patch")
    check_mode(direction, None)
    check_sizes(chunk_size, memory_budget)
    recv = parse_receivers(model, receivers)
    sender_sets = (
        [[(l, h)] for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
        if senders is None
        else [_parse_senders(model, senders)]
    )
    inputs = prepare_patch_inputs(model, clean, corrupted, metric, answers=answers)
    n_layers, n_heads, n_pos = model.cfg.n_layers, model.cfg.n_heads, inputs.n_pos
    z_hooks = [f"blocks.{l}.attn.hook_z" for l in range(n_layers)]
    mlp_hooks = [f"blocks.{l}.hook_mlp_out" for l in range(n_layers)] if freeze_mlps and not model.cfg.attn_only else []
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    recv_hooks = sorted({f"blocks.{l}.attn.hook_{k}" for l, _, k in [r for r in recv if r != FINAL]})
    if FINAL in recv:
        recv_hooks.append(final)

    base_tokens, source_tokens = (inputs.corrupted, inputs.clean) if direction == "denoising" else (inputs.clean, inputs.corrupted)
    made: list[Any] = []
    source, target_m = collect(model, source_tokens, z_hooks, inputs.metric, cache_for(model, source_tokens, cache, made))
    base = base_run(model, base_tokens, inputs.metric, cache_hooks=[*z_hooks, *mlp_hooks, *recv_hooks],
                    cache=cache_for(model, base_tokens, cache, made))

    # Step 1: senders from the source run, every other head (and optionally MLP) frozen.
    step1: list[Variant] = []
    for senders_v in sender_sets:
        first = min(l for l, _ in senders_v)
        by_layer: dict[int, list[int]] = defaultdict(list)
        for l, h in senders_v:
            by_layer[l].append(h)
        patches = []
        for l in range(first, n_layers):
            hook = z_hooks[l]
            if by_layer.get(l):
                patches.append(Patch(hook, _head_mask(n_pos, n_heads, by_layer[l]), source[hook]))
            if l > first:
                patches.append(Patch(hook, _head_mask(n_pos, n_heads, by_layer.get(l, []), invert=True), base.cache[hook]))
        patches += [Patch(h, torch.ones(n_pos, 1, dtype=torch.bool), base.cache[h]) for h in mlp_hooks[first:]]
        step1.append(tuple(patches))
    naive = strategy == "naive"
    _, captured = run_variants(
        model, base, step1, None, memory_budget=memory_budget, chunk_size=chunk_size, naive=naive, capture=recv_hooks
    )

    # Step 2: only the receivers' inputs patched to their step-1 values.
    recv_heads: dict[str, list[int]] = defaultdict(list)
    for r in recv:
        if r != FINAL:
            recv_heads[f"blocks.{r[0]}.attn.hook_{r[2]}"].append(r[1])
    step2: list[Variant] = []
    for v in range(len(sender_sets)):
        patches = [
            Patch(hook, _head_mask(n_pos, site_heads(model, hook[-1]), heads), captured[hook][v], own=True)
            for hook, heads in recv_heads.items()
        ]
        if FINAL in recv:
            delta = captured[final][v] - base.cache[final]
            patches.append(Patch(final, torch.ones(n_pos, 1, dtype=torch.bool), delta, add=True, own=True))
        step2.append(tuple(patches))
    per_prompt = run_variants(model, base, step2, inputs.metric, memory_budget=memory_budget, chunk_size=chunk_size, naive=naive)

    raw = per_prompt.mean(1)
    base_value, target = float(base.metric.mean()), float(target_m.mean())
    if senders is None:
        raw = raw.reshape(n_layers, n_heads)
        dims, labels = ("layer", "head"), {"layer": [f"L{l}" for l in range(n_layers)], "head": [f"H{h}" for h in range(n_heads)]}
    else:
        raw, dims, labels = raw.reshape(()), (), {}
    do_norm = normalise
    if do_norm and abs(target - base_value) < 1e-8:
        from mechinterp.errors import NonFiniteError

        raise NonFiniteError("Base and source runs have the same mean metric: normalised path effects are undefined; pass normalise=False.")
    values = metrics.normalise(raw, clean=target, corrupted=base_value) if do_norm else raw.clone()
    names = ["resid_final" if r == FINAL else f"L{r[0]}H{r[1]}.{r[2]}" for r in recv]
    send = "each head" if senders is None else ",".join(f"L{l}H{h}" for l, h in sender_sets[0])
    return PatchResult(
        values=values, raw=raw, dims=dims, labels=labels, site=f"path:{send}->{'+'.join(names)}",
        method="path" if not naive else "path_naive", direction=direction, metric=inputs.metric_name,
        normalised=do_norm, base_value=base_value, target_value=target, tokens=inputs.str_tokens,
    )
