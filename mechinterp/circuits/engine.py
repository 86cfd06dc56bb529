"""Edge patching: one forward pass evaluates any set of patched edges, for many masks at once.

Every receiver's input is the residual stream it would read, corrected edge by edge::

    input_r = resid_r + sum_s  alpha[s, r] * (patched_s - out_s)

where ``out_s`` is sender ``s``'s output in *this* run and ``patched_s`` the value patched in
(the corrupted run's output, its mean, or zero). ``alpha = 0`` is the clean model, ``alpha = 1``
removes the edge (the receiver sees the patched value instead); an edge kept by a circuit has
``alpha = 0``. ``alpha`` may carry a leading mask dimension ``k``: the prompts are repeated
``k`` times and each copy runs its own mask, so ``k`` candidate circuits cost one batched pass.
Because the correction is linear in ``alpha``, its gradient at ``alpha = 0`` is
``(patched_s - out_s) . d metric / d input_r``: edge attribution patching (EAP).

Implementation: TransformerLens's split q/k/v inputs (``blocks.{l}.hook_q_input`` etc.,
``[batch pos head_index d_model]``) and ``hook_mlp_in`` are switched on for the duration of the
call (restored afterwards, also on error); head outputs are ``hook_z @ W_O`` per head (the
per-head ``hook_result`` is never materialised by TL). Biases (``b_O``, MLP biases inside
``MLP{l}``'s output) ride along with the stream and are never patched, so a fully patched
receiver equals the receiver input of the corrupted run.

Example:
    >>> import mechinterp
    >>> from mechinterp.circuits import Graph, prepare_edge_patching, patch_edges
    >>> model = mechinterp.load("zoo:tracr-frac-prevs")
    >>> task = mechinterp.tasks.load("tracr-frac-prevs", model, n=4)
    >>> setup = prepare_edge_patching(model, task.clean_tokens, task.corrupted_tokens, ablation="corrupted")
    >>> patch_edges(model, setup, torch.zeros(2, *setup.graph.real.shape)).shape
    torch.Size([2, 4, 6, 2])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.validation import check_count, check_token_ids
from mechinterp.circuits.graph import Graph, grouped_kv_heads
from mechinterp.core.ablation import resample_permutation
from mechinterp.core.deprecation import deprecated_alias
from mechinterp.core.cache import SharedCache
from mechinterp.core.fastpath import tl_flags
from mechinterp.core.intervention import Intervention
from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError, PromptTooLongError, ShapeMismatchError

__all__ = [
    "ABLATIONS", "PatchSetup", "check_metric_output", "check_model_dtype", "edge_mode", "max_masks_per_pass", "prepare_edge_patching", "patch_edges",
    "run_edges", "sender_outputs",
]

ABLATIONS = ("corrupted", "mean", "zero", "resample")


def check_model_dtype(model: Any) -> torch.dtype:
    """The model's floating dtype; raises a MechinterpError when its weights and ``cfg.dtype`` disagree.

    ``model.half()`` / ``model.bfloat16()`` (plain ``torch.nn.Module`` casts) change the weights
    but not TransformerLens's ``cfg.dtype``, and TL's own forward then fails inside a matmul.
    """
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    cfg_dtype = getattr(model.cfg, "dtype", torch.float32)
    if dtypes and dtypes != {cfg_dtype}:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
        raise MechinterpError(
            f"The model's weights are {names} but model.cfg.dtype is {str(cfg_dtype).removeprefix('torch.')} "
            "(model.half() / model.bfloat16() do not update TransformerLens's config); cast with "
            "model.to(torch.bfloat16) or load with mechinterp.load(..., dtype=torch.bfloat16) instead."
        )
    return cfg_dtype


def metric_name(metric: Any) -> str:
    """How a message names the user's metric: its function name (``<lambda>`` for a lambda; a task's by what it computes)."""
    from mechinterp.core.metrics import metric_label

    return metric_label(metric)


def check_metric_output(metric: Any, value: Any, batch: int) -> Float[Tensor, " batch"]:
    """The one check of a metric's output that every circuit scorer and evaluator applies.

    ``value`` is ``metric(logits)`` for logits ``[batch, pos, d_vocab]``; it must be a tensor of
    shape ``[batch]`` (one number per prompt) with finite entries. Returned as float32 with its
    autograd graph kept (the gradient scorers differentiate it).

    Raises:
        ShapeMismatchError: any other shape (``[batch, 3]``, a scalar, another batch size) or not a tensor.
        NonFiniteError: NaN or infinite entries; the message names the metric.
    """
    shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
    if not isinstance(value, Tensor) or value.ndim != 1 or value.shape[0] != batch:
        raise ShapeMismatchError(
            f"metric must map logits [batch, pos, d_vocab] to [batch] (one number per prompt, here {batch}); "
            f"metric {metric_name(metric)!r} returned {shape}. Read one position and answer per prompt, "
            "e.g. logits[:, -1, a] - logits[:, -1, b], and do not average over the batch."
        )
    if not torch.isfinite(value).all():
        raise NonFiniteError(
            f"metric {metric_name(metric)!r} returned NaN or infinite values; check the metric and the task's "
            "answers (a log of 0, a division by 0) and the model's logits."
        )
    return value.float()


def dtype_hint(model: Any) -> str:
    """A sentence to append to non-finite errors: fp16's range is the usual cause on real models."""
    if getattr(model.cfg, "dtype", torch.float32) == torch.float16:
        return (" The model runs in float16, whose range (max 65504) real models exceed; load it with "
                "dtype=torch.bfloat16 or torch.float32.")
    return ""


@contextlib.contextmanager
def edge_mode(model: Any) -> Iterator[None]:
    """Switch on TL's split q/k/v inputs and ``hook_mlp_in`` for the duration; restore on exit.

    On a grouped-query-attention model it also sets ``cfg.ungroup_grouped_query_attention``
    (one key/value input per query head, see :mod:`mechinterp.circuits.graph`); every flag
    gets its old value back, also when the body raises.
    """
    ungroup = {"ungroup_grouped_query_attention": True} if grouped_kv_heads(model.cfg) is not None else {}
    with tl_flags(model, use_split_qkv_input=True, use_hook_mlp_in=True, **ungroup):
        yield


@dataclass(frozen=True)
class PatchSetup:
    """Everything a patched run needs: the graph, clean tokens, and the values patched in.

    Attributes:
        graph: the model's :class:`Graph`.
        tokens: ``[batch, pos]`` clean token ids.
        patched: ``[batch or 1, pos, n_senders, d_model]`` sender values patched into removed edges.
        clean: ``[batch, pos, n_senders, d_model]`` sender outputs of the clean run.
        ablation: ``"corrupted"``, ``"mean"`` or ``"zero"``.
        corrupted_tokens: the corrupted ids (``None`` for zero ablation).
    """

    graph: Graph
    tokens: Int[Tensor, "batch pos"]
    patched: Float[Tensor, "batch pos n_senders d_model"]
    clean: Float[Tensor, "batch pos n_senders d_model"]
    ablation: str
    corrupted_tokens: Int[Tensor, "batch pos"] | None = None

    @property
    def diff(self) -> Float[Tensor, "batch pos n_senders d_model"]:
        """``patched - clean`` in float32: what removing an edge adds to its receiver (clean run).

        Taken in float32 whatever the model's dtype, so the difference of two bf16/fp16 values
        is exact (the EAP sums that contract it are float32 too).
        """
        return self.patched.float() - self.clean.float()


def _check_tokens(model: Any, tokens: Any, name: str) -> Tensor:
    if tokens is None:
        raise EmptyInputError(f"{name} tokens are missing; pass a [batch, pos] tensor of token ids.")
    tokens = torch.as_tensor(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.ndim != 2 or tokens.numel() == 0:
        raise EmptyInputError(f"{name} tokens must be a non-empty [batch, pos] tensor; got shape {tuple(tokens.shape)}.")
    if tokens.shape[1] > model.cfg.n_ctx:
        raise PromptTooLongError(
            f"{name} prompts have {tokens.shape[1]} tokens but the model's n_ctx is {model.cfg.n_ctx}; shorten them."
        )
    if tokens.dtype not in (torch.int64, torch.int32) or tokens.min() < 0 or tokens.max() >= model.cfg.d_vocab:
        raise MechinterpError(f"{name} tokens must be integer ids in [0, {model.cfg.d_vocab}).")
    return tokens.long().to(model.cfg.device)


@runs_synced
def sender_outputs(
    model: Any, graph: Graph, tokens: Int[Tensor, "batch pos"], cache: SharedCache | None = None
) -> Float[Tensor, "batch pos n_senders d_model"]:
    """Every sender's output in a plain forward pass on ``tokens`` (no gradient).

    ``cache``: a :class:`~mechinterp.core.cache.SharedCache` (``positions="all"``) on exactly these
    prompts; the outputs are then read from its ``blocks.0.hook_resid_pre``, ``hook_z`` (times
    ``W_O`` per head) and ``hook_mlp_out`` (no forward pass for what it holds), equal to the
    patched pass's to float rounding. Without it, one pass of :func:`run_edges`.
    """
    if cache is None:
        with torch.no_grad():
            _, outs = run_edges(model, graph, tokens, capture=True)
        return outs
    if cache.positions != "all" or tuple(cache.tokens.shape) != tuple(tokens.shape) or not torch.equal(
            cache.tokens.cpu(), tokens.cpu()):
        raise MechinterpError("cache must be a SharedCache with positions='all' on exactly these prompts; "
                              "build it with mechinterp.SharedCache(model, tokens) or pass cache=None.")
    n = model.cfg.n_layers
    names = ["blocks.0.hook_resid_pre", *[f"blocks.{l}.attn.hook_z" for l in range(n)]]
    names += [f"blocks.{l}.hook_mlp_out" for l in range(n)] if graph.has_mlp else []
    cache.fetch(names)
    device = tokens.device
    parts = [cache.get("blocks.0.hook_resid_pre").to(device)[:, :, None]]  # [batch, pos, 1, d_model]
    with torch.no_grad():
        for layer in range(n):
            z = cache.get(f"blocks.{layer}.attn.hook_z").to(device)  # [batch, pos, head_index, d_head]
            parts.append(torch.einsum("bphe,hed->bphd", z, model.blocks[layer].attn.W_O.to(z.dtype)))
            if graph.has_mlp:
                parts.append(cache.get(f"blocks.{layer}.hook_mlp_out").to(device)[:, :, None])
    return torch.cat(parts, dim=2)


@runs_synced
def prepare_edge_patching(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
    ablation: str = "corrupted",
    graph: Graph | None = None,
    lengths: Int[Tensor, " batch"] | None = None,
    seed: int = 0,
    cache: SharedCache | None = None,
) -> PatchSetup:
    """Cache what edge patching needs: clean sender outputs and the values to patch in.

    Args:
        model: a ``HookedTransformer``.
        tokens: clean ``[batch, pos]`` ids.
        corrupted_tokens: same shape; required for ``"corrupted"`` and ``"mean"`` ablation
            (mean: the per-position mean of the corrupted run's sender outputs).
        ablation: ``"corrupted"``, ``"mean"``, ``"zero"`` or ``"resample"`` (each prompt's removed
            edges carry another prompt's clean sender outputs: :mod:`mechinterp.core.ablation`).
        graph: defaults to ``Graph.from_model(model)``.
        lengths: ``[batch]`` tokens per prompt, padding excluded, for right-padded prompts of
            different lengths (a task's ``lengths``; :func:`setup_for` passes them). Mean
            ablation then averages each position over the prompts that have a real token
            there, never over pads. ``None``: every position of every prompt is real.
        seed: the seed of resample ablation's permutation (the same pairing as patching's).
        cache: a :class:`~mechinterp.core.cache.SharedCache` (``positions="all"``) on the clean or the
            corrupted prompts: that run's sender outputs are read from it (:func:`sender_outputs`).

    Raises:
        MechinterpError: unknown ablation or bad ``lengths``; ShapeMismatchError when clean and corrupted
            differ in shape; PromptTooLongError / EmptyInputError on bad tokens.
    """
    for arg, ids in (("tokens", tokens), ("corrupted_tokens", corrupted_tokens)):
        if isinstance(ids, Tensor) and ids.numel():
            check_token_ids(model, ids, arg)
    if ablation not in ABLATIONS:
        raise MechinterpError(f"Unknown ablation {ablation!r}; use one of {ABLATIONS}.")
    graph = graph or Graph.from_model(model)
    tokens = _check_tokens(model, tokens, "clean")
    corr = None
    if ablation not in ("zero", "resample") or corrupted_tokens is not None:
        corr = _check_tokens(model, corrupted_tokens, "corrupted")
        if corr.shape != tokens.shape:
            raise ShapeMismatchError(
                f"clean {tuple(tokens.shape)} and corrupted {tuple(corr.shape)} tokens differ in shape; "
                "pad or re-draw them so that every clean prompt has a corrupted one of the same length."
            )
    real = _real_positions(tokens, lengths) if ablation == "mean" else None  # only the mean reads the padding
    clean = sender_outputs(model, graph, tokens, _holding(cache, tokens))
    if not torch.isfinite(clean).all():
        raise NonFiniteError("The model's activations on the clean prompts have NaN or infinite entries." + dtype_hint(model))
    if ablation == "zero":
        patched = torch.zeros_like(clean[:1])
    elif ablation == "resample":  # each prompt gets another prompt's clean sender outputs (seeded derangement)
        if tokens.shape[0] < 2:
            raise MechinterpError("Resample ablation needs at least 2 prompts (each takes another's activations).")
        patched = clean[resample_permutation(tokens.shape[0], seed).to(clean.device)]
    else:
        patched = sender_outputs(model, graph, corr, _holding(cache, corr))
        if not torch.isfinite(patched).all():
            raise NonFiniteError("The model's activations on the corrupted prompts have NaN or infinite entries." + dtype_hint(model))
        if ablation == "mean":
            patched = _masked_mean(patched, real)
    return PatchSetup(graph, tokens, patched, clean, ablation, corr)


def _holding(cache: SharedCache | None, tokens: Tensor) -> SharedCache | None:
    """``cache`` when it holds exactly ``tokens``' prompts, else ``None``."""
    if cache is None or tuple(cache.tokens.shape) != tuple(tokens.shape):
        return None
    return cache if torch.equal(cache.tokens.cpu(), tokens.cpu()) else None


def _real_positions(tokens: Tensor, lengths: Any) -> Tensor | None:
    """``[batch, pos]`` bool, True at real (non-pad) tokens of right-padded prompts; ``None`` when all are real."""
    if lengths is None:
        return None
    batch, width = tokens.shape
    lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() and bool((lengths == lengths.round()).all()):
        lengths = lengths.long()
    if (lengths.shape != (batch,) or lengths.is_floating_point() or lengths.dtype == torch.bool
            or int(lengths.min()) < 1 or int(lengths.max()) > width):
        raise MechinterpError(
            f"lengths must be [batch] = [{batch}] integers in [1, {width}] (each prompt's tokens, padding "
            f"excluded); got {lengths.tolist() if lengths.numel() <= 16 else tuple(lengths.shape)}. "
            "Pass the task's lengths, or None when no prompt is padded."
        )
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def _masked_mean(values: Tensor, real: Tensor | None) -> Tensor:
    """Per-position mean over the prompts (dim 0) that are real there; positions where none is keep the plain mean.

    ``values``: ``[batch, pos, ...]``; returns ``[1, pos, ...]``. Positions that are padding in every
    prompt only feed padding positions (right padding, causal attention), so their value is immaterial.
    """
    if real is None:
        return values.mean(0, keepdim=True)
    w = real.to(values.device, values.dtype).view(*real.shape, *([1] * (values.ndim - 2)))
    count = w.sum(0, keepdim=True)
    masked = (values * w).sum(0, keepdim=True) / count.clamp(min=1)
    return torch.where(count > 0, masked, values.mean(0, keepdim=True))


def _as_alpha(setup: PatchSetup, patch: Tensor) -> Tensor:
    g = setup.graph
    patch = torch.as_tensor(patch)
    if patch.ndim == 2:
        patch = patch[None]
    if patch.ndim != 3 or patch.shape[1:] != g.real.shape:
        raise ShapeMismatchError(
            f"A patch mask must be [n_senders, n_receivers] = {tuple(g.real.shape)} or carry a leading mask "
            f"dimension; got {tuple(patch.shape)}."
        )
    if patch.dtype == torch.bool:
        patch = patch.float()
    if not torch.isfinite(patch).all():
        raise NonFiniteError("The patch mask has NaN or infinite entries.")
    return patch * g.real.to(patch.device, patch.dtype)


@runs_synced
def patch_edges(
    model: Any, setup: PatchSetup, patch: Float[Tensor, "k n_senders n_receivers"], chunk: int | None = None
) -> Float[Tensor, "k batch pos d_vocab"]:
    """Logits with the edges where ``patch`` is 1 patched (fractions interpolate), one pass per chunk of masks.

    Args:
        model: the model ``setup`` was prepared on.
        setup: from :func:`prepare_edge_patching`.
        patch: ``[n_senders, n_receivers]`` or ``[k, n_senders, n_receivers]``; bool or float;
            entries that are not real edges are ignored.
        chunk: masks per forward pass (default: all ``k``); capped by :func:`max_masks_per_pass`.
    """
    check_count(chunk, "chunk", none_ok=True)
    alpha = _as_alpha(setup, patch).to(model.cfg.device)
    chunk = min(chunk or alpha.shape[0], max_masks_per_pass(model, setup))
    with torch.no_grad():
        parts = [run_edges(model, setup.graph, setup.tokens, setup.patched, alpha[i : i + chunk])[0]
                 for i in range(0, alpha.shape[0], chunk)]
    return torch.cat(parts)


@runs_synced
def max_masks_per_pass(model: Any, setup: PatchSetup, budget_bytes: int = 2**30) -> int:
    """How many masks one patched pass may carry within ``budget_bytes`` of sender differences and split inputs.

    A dense mask holds ``patched - live`` for every sender (``n_senders x batch x pos x d_model``) and
    TL's split q/k/v inputs (``3 x n_heads x ...``); on SmolLM2 (301 senders, 9 heads) with 24 prompts
    of 20 tokens that is about 360 MB per mask, so 2 per pass, while tiny models are never capped.
    """
    check_count(budget_bytes, "budget_bytes")
    tokens = setup.tokens
    elem = torch.finfo(setup.patched.dtype).bits // 8
    per_mask = tokens.numel() * model.cfg.d_model * elem * (setup.graph.n_senders + 3 * setup.graph.n_heads)
    return max(1, int(budget_bytes // max(per_mask, 1)))


@runs_synced
def run_edges(
    model: Any,
    graph: Graph,
    tokens: Int[Tensor, "batch pos"],
    patched: Tensor | None = None,
    alpha: Float[Tensor, "k n_senders n_receivers"] | None = None,
    *,
    capture: bool = False,
    embed_fn: Callable[[Tensor], Tensor] | None = None,
    receiver_inputs: list[tuple[int, Tensor]] | None = None,
) -> tuple[Float[Tensor, "k batch pos d_vocab"], Tensor | None]:
    """The low-level patched forward pass (see the module docstring).

    Args:
        tokens: ``[batch, pos]``; the run uses ``k * batch`` rows (mask-major).
        patched: ``[batch or 1, pos, n_senders, d_model]`` values for removed edges.
        alpha: ``[k, n_senders, n_receivers]`` patch amounts (may require grad).
        capture: also return every sender output ``[k*batch, pos, n_senders, d_model]``.
        embed_fn: maps the embedding output (``blocks.0.hook_resid_pre``) before use (EAP-IG on inputs).
        receiver_inputs: if a list, ``(first receiver index, tensor)`` per receiver input is appended
            (for gradients with respect to them).

    Returns:
        ``(logits [k, batch, pos, d_vocab], sender outputs or None)``.
    """
    tokens = check_token_ids(model, tokens, "tokens")
    cfg = model.cfg
    check_model_dtype(model)
    k = 1 if alpha is None else alpha.shape[0]
    batch = tokens.shape[0]
    blocks: list[tuple[int, Tensor]] = []  # (first sender index, [rows, pos, n, d_model])
    diffs: dict[int, Tensor] = {}  # block index -> [k, n, batch*pos*d_model], filled lazily
    dense: dict[str, Any] = {}  # no-grad passes: one sender-major buffer of every block's difference
    if alpha is not None and patched is None:
        raise MechinterpError("Patched values are needed when a patch mask is given; use prepare_edge_patching().")

    class _Lazy:
        """A sender block's output, computed on first use (head results cost a [rows, pos, head, d_model] product)."""

        def __init__(self, fn: Callable[[], Tensor], n: int) -> None:
            self.fn, self.n, self.value = fn, n, None

        def get(self) -> Tensor:
            if self.value is None:
                self.value = self.fn()
            return self.value

    def add_sender(start: int, out: Tensor | _Lazy) -> None:
        blocks.append((start, out if isinstance(out, _Lazy) else _Lazy(lambda: out, out.shape[2])))

    def sender_major(diff: Tensor) -> Tensor:
        """``[m, batch, pos, n, d_model] -> [m, n, batch*pos*d_model]``: senders first, ready for one bmm."""
        return diff.permute(0, 3, 1, 2, 4).reshape(diff.shape[0], diff.shape[3], -1)

    def block_diff(i: int) -> Tensor:
        """``patched - live output`` of sender block ``i`` for every mask, computed once: [k, n, batch*pos*d_model]."""
        if i not in diffs:
            start, lazy = blocks[i]
            out, n = lazy.get(), lazy.n
            diffs[i] = sender_major(patched[..., start : start + n, :].to(out.dtype)[None] - out.view(k, batch, *out.shape[1:]))
        return diffs[i]

    def dense_delta(cols: slice | list[int]) -> Tensor | None:
        """No-grad passes where most masks patch some edge into ``cols``: one bmm over a sender-major buffer.

        The buffer ``[k, n_senders, batch*pos*d_model]`` is filled block by block as senders are written
        (in place: nothing needs gradients here) and each receiver group reads its prefix once.
        """
        start, lazy = blocks[-1]
        written = start + lazy.n
        a = alpha[:, :written, cols]  # [k, senders written so far, r]
        if 2 * int(a.reshape(k, -1).any(1).sum()) < k:
            return None  # most masks leave these receivers alone (exact scoring): the per-block path skips them
        if "buffer" not in dense:
            out = blocks[0][1].get()
            dense["buffer"] = out.new_empty(k, graph.n_senders, batch * out.shape[1] * out.shape[-1])
            dense["filled"] = set()
        buffer = dense["buffer"]
        for i, (first, block) in enumerate(blocks):
            if i not in dense["filled"]:
                out = block.get()
                diff = patched[..., first : first + block.n, :].to(out.dtype)[None] - out.view(k, batch, *out.shape[1:])
                buffer[:, first : first + block.n] = sender_major(diff)
                dense["filled"].add(i)
        total = torch.bmm(a.transpose(1, 2).to(buffer.dtype), buffer[:, :written])  # [k, r, batch*pos*d_model]
        d_model = cfg.d_model
        total = total.view(k, total.shape[1], batch, -1, d_model)
        return total.permute(0, 2, 3, 1, 4).reshape(k * batch, -1, total.shape[1], d_model)

    def delta(cols: slice | list[int]) -> Tensor | None:
        """``sum_s alpha[s, r] (patched_s - out_s)`` for the receivers ``cols``: [k*batch, pos, r, d_model] or None.

        One ``[r, n] @ [n, batch*pos*d_model]`` product per mask and sender block (``baddbmm``), accumulated over
        the blocks written so far.
        """
        if alpha is None:
            return None
        if not torch.is_grad_enabled() and blocks:
            dense = dense_delta(cols)
            if dense is not None:
                return dense
        total = None
        for i, (start, lazy) in enumerate(blocks):
            a = alpha[:, start : start + lazy.n, cols]  # [k, n, r]
            if a.requires_grad:
                active = None
            else:
                active = torch.nonzero(a.reshape(k, -1).any(1)).flatten()
                if len(active) == 0:
                    continue  # no mask patches these edges: skip the difference and the contraction
            if active is None or len(active) == k:
                diff = block_diff(i)
                a_t = a.transpose(1, 2).to(diff.dtype)  # [k, r, n]
                total = torch.bmm(a_t, diff) if total is None else torch.baddbmm(total, a_t, diff)
            else:  # sparse masks (exact scoring): contract only the masks that touch these edges
                out, n = lazy.get(), lazy.n
                live = out.view(k, batch, *out.shape[1:])[active]
                diff = sender_major(patched[..., start : start + n, :].to(out.dtype)[None] - live)
                part = torch.bmm(a[active].transpose(1, 2).to(out.dtype), diff)  # [m, r, batch*pos*d_model]
                if total is None:
                    total = part.new_zeros(k, *part.shape[1:])
                total = total.index_add(0, active, part)
        if total is None:
            return None
        d_model = cfg.d_model
        total = total.view(k, total.shape[1], batch, -1, d_model)  # [k, r, batch, pos, d_model]
        return total.permute(0, 2, 3, 1, 4).reshape(k * batch, -1, total.shape[1], d_model)

    def record(first: int, x: Tensor) -> Tensor:
        if receiver_inputs is not None:
            receiver_inputs.append((first, x))
        return x

    def embed_hook(x: Tensor, hook: Any) -> Tensor:  # [rows, pos, d_model]
        if embed_fn is not None:
            x = embed_fn(x)
        add_sender(0, x[:, :, None, :])
        return x

    def z_hook(layer: int) -> Callable:
        heads, _ = graph.layer_senders(layer)
        w_o = model.blocks[layer].attn.W_O  # [head_index d_head d_model]

        def hook(z: Tensor, hook: Any) -> Tensor:  # [rows, pos, head_index, d_head]
            add_sender(heads.start, _Lazy(lambda: torch.einsum("bphe,hed->bphd", z, w_o.to(z.dtype)), z.shape[2]))
            return z

        return hook

    def mlp_out_hook(layer: int) -> Callable:
        _, mlp = graph.layer_senders(layer)

        def hook(x: Tensor, hook: Any) -> Tensor:  # [rows, pos, d_model]
            add_sender(mlp, x[:, :, None, :])
            return x

        return hook

    def receiver_hook(name: str, cols: list[int], per_head: bool) -> tuple[str, Callable]:
        """Receiver inputs ``[rows, pos, head_index, d_model]`` (q/k/v, ``per_head``) or ``[rows, pos, d_model]``
        plus their edge corrections: an ``add`` :class:`~mechinterp.core.intervention.Intervention` whose value
        is computed from this run's senders."""
        def correction(x: Tensor) -> Tensor | None:
            d = delta(cols)
            return d if d is None or per_head else d[:, :, 0]

        edges = Intervention(name, None, correction, mode="add")
        return name, lambda x, hook: record(cols[0], edges.apply(x))

    def qkv_hook(layer: int, part: int) -> tuple[str, Callable]:
        qkv, _ = graph.layer_receivers(layer)
        return receiver_hook(f"blocks.{layer}.hook_{'qkv'[part]}_input", list(range(qkv.start + part, qkv.stop, 3)), True)

    fwd: list[tuple[str, Callable]] = [("blocks.0.hook_resid_pre", embed_hook)]
    for layer in range(cfg.n_layers):
        fwd += [qkv_hook(layer, part) for part in range(3)]
        fwd.append((f"blocks.{layer}.attn.hook_z", z_hook(layer)))
        if graph.has_mlp:
            fwd.append(receiver_hook(f"blocks.{layer}.hook_mlp_in", [graph.layer_receivers(layer)[1]], False))
            fwd.append((f"blocks.{layer}.hook_mlp_out", mlp_out_hook(layer)))
    fwd.append(receiver_hook(f"blocks.{cfg.n_layers - 1}.hook_resid_post", [graph.n_receivers - 1], False))

    rows = tokens.repeat(k, 1) if k > 1 else tokens
    with edge_mode(model), model.hooks(fwd_hooks=fwd):
        logits = model(rows)
    outs = None
    if capture:
        outs = torch.cat([lazy.get() for _, lazy in sorted(blocks, key=lambda b: b[0])], dim=2)
    return logits.view(k, batch, *logits.shape[1:]), outs


#: deprecated old name of :func:`prepare_edge_patching` (removed in the next release).
prepare = deprecated_alias(prepare_edge_patching, "mechinterp.circuits.prepare", "mechinterp.circuits.prepare_edge_patching")
