"""``discover(model, task, method=...)``: score every edge with a registered method, return a Circuit.

Example:
    >>> import mechinterp
    >>> from mechinterp.circuits import discover, compare_to_reference
    >>> model = mechinterp.load("zoo:tracr-frac-prevs")
    >>> task = mechinterp.tasks.load("tracr-frac-prevs", model, n=16)
    >>> circuit = discover(model, task, method="exact", ablation="zero")
    >>> compare_to_reference(circuit, task.ground_truth.circuit)["auc"]
    1.0
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import torch

from mechinterp.core.precision import runs_synced
from mechinterp.core.validation import check_task
from mechinterp.circuits.circuit import Circuit
from mechinterp.circuits.distributed import LINEAR_SCORERS, shards_task
from mechinterp.core.distributed import current, distributed
from mechinterp.circuits.engine import PatchSetup, prepare_edge_patching
from mechinterp.circuits.gradients import node_attribution
from mechinterp.circuits.scorers import get_scorer
from mechinterp.errors import MechinterpError

__all__ = ["discover", "setup_for"]


@runs_synced
def setup_for(model: Any, task: Any, ablation: str = "corrupted", *, seed: int = 0) -> PatchSetup:
    """:func:`~mechinterp.circuits.prepare_edge_patching` on a task's clean and corrupted tokens.

    The task's ``lengths`` keep padding out of mean ablation; ``seed`` is resample ablation's
    (:func:`mechinterp.core.ablation.resample_permutation`).
    """
    if task is None or not hasattr(task, "clean_tokens"):
        raise MechinterpError("discover needs a mechinterp Task (mechinterp.tasks.load(name, model, n=...)).")
    check_task(model, task)
    return prepare_edge_patching(model, task.clean_tokens, task.corrupted_tokens, ablation=ablation,
                                 lengths=getattr(task, "lengths", None), seed=seed)


@shards_task
@runs_synced
def discover(
    model: Any,
    task: Any,
    method: str = "eap",
    ablation: str = "corrupted",
    *,
    top_n: int | None = None,
    node_first_pass: int | None = None,
    setup: PatchSetup | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    **options: Any,
) -> Circuit:
    """Score every edge of ``model``'s graph on ``task`` with ``method``.

    Args:
        model: a ``HookedTransformer`` (zoo models: ``mechinterp.load("zoo:...")``).
        task: a :class:`mechinterp.tasks.Task`; its ``metric`` is the objective.
        method: a key of :data:`mechinterp.circuits.SCORERS` (``eap``, ``eap-ig-inputs``,
            ``eap-ig-activations``, ``exact``, ``acdc``, ``node``).
        ablation: what removed edges carry: ``"corrupted"``, ``"mean"``, ``"zero"`` or
            ``"resample"`` (one meaning in every family: :mod:`mechinterp.core.ablation`).
        top_n: select the ``n`` top edges (default: every edge with a non-zero score; ACDC:
            the edges kept at the median threshold of its sweep).
        node_first_pass: for ``exact`` and ``acdc``: score only edges between the ``k`` senders
            of largest node attribution (plus the logits) — a cheap first pass.
        setup: a prepared :class:`PatchSetup` to reuse (skips the clean/corrupted caching).
        seed: the seed of resample ablation's permutation.
        batch_size: score the methods whose scores are a mean over prompts (all but ``acdc``) on
            this many prompts at a time and average, weighted by chunk size: the same scores, with
            memory bounded by the chunk. Without ``setup`` each chunk's caches are prepared in turn
            (the one-process case of :func:`mechinterp.distributed`'s ``batch_size``); with one,
            it is sliced. Mean and resample ablation use the whole task's statistics either way.
            ``None``: one batch (or the open ``mechinterp.distributed`` context's batch size).
        **options: the method's options (``steps``, ``thresholds``, ``distance``, ``chunk``).

    Returns:
        A frozen :class:`Circuit`; ``info`` has the wall time, method details and the precision
        (``model_dtype``: what the passes ran in; scores are always float32).
    """
    if task is not None and hasattr(task, "clean_tokens"):
        check_task(model, task)
    scorer = get_scorer(method)
    if batch_size is not None:
        _check_batch_size(scorer.name, batch_size)
        # prepare and score batch by batch (bounded memory end to end); under torchrun without an open
        # mechinterp.distributed() context this process stays unsharded and slices one prepared setup
        if setup is None and node_first_pass is None and (current() is not None or os.environ.get("WORLD_SIZE", "1") in ("", "1")):
            with distributed(batch_size=batch_size):
                return discover(model, task, method, ablation, top_n=top_n, seed=seed, **options)
    start = time.perf_counter()
    setup = setup or setup_for(model, task, ablation, seed=seed)
    if node_first_pass is not None:
        if "candidates" not in scorer.options:
            raise MechinterpError(f"node_first_pass applies to methods that take candidates (exact, acdc), not {method}.")
        options["candidates"] = _candidates(model, setup, task.metric, node_first_pass)
    if batch_size is None or batch_size >= setup.tokens.shape[0]:
        scores, info = scorer(model, setup, task.metric, **options)
    else:
        scores, info = _score_in_batches(scorer, model, setup, task, batch_size, options)
    if not torch.isfinite(scores).all():
        raise MechinterpError(f"{method} produced non-finite edge scores; check the task metric on these prompts.")
    g = setup.graph
    selected = info.pop("selected", None)  # a method's own default circuit (ACDC: the median threshold's)
    selected = g.real & (scores != 0) if selected is None else g.real & selected.bool()
    circuit = Circuit(
        graph=g, scores=scores.float().cpu(), selected=selected.cpu(), method=method, ablation=setup.ablation,
        task=getattr(task, "name", ""), model=str(getattr(model, "zoo_name", None) or model.cfg.model_name),
        info={**info, "seconds": time.perf_counter() - start, "n_prompts": int(setup.tokens.shape[0]),
              "model_dtype": str(setup.clean.dtype).removeprefix("torch."), "score_dtype": "float32"},
    )
    return circuit.top_n(top_n) if top_n is not None else circuit


#: scorers whose scores are a mean over prompts (so chunks combine exactly)
BATCHABLE = LINEAR_SCORERS


def _check_batch_size(method: str, batch_size: Any) -> None:
    if method not in BATCHABLE:
        raise MechinterpError(f"batch_size applies to the methods whose scores are a mean over prompts {list(BATCHABLE)}, "
                              f"not {method!r} (ACDC's greedy pruning takes chunk= to bound its memory).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise MechinterpError(f"batch_size must be a positive integer, got {batch_size!r}.")


def _score_in_batches(scorer: Any, model: Any, setup: PatchSetup, task: Any, batch_size: int, options: dict) -> tuple:
    n = setup.tokens.shape[0]
    total: torch.Tensor | None = None
    nodes: torch.Tensor | None = None
    for start in range(0, n, batch_size):
        rows = list(range(start, min(start + batch_size, n)))
        part = task.subset(rows)
        scores, info = scorer(model, _slice_setup(setup, rows, part.clean_tokens.shape[1]), part.metric, **options)
        weight = len(rows) / n
        total = scores * weight if total is None else total + scores * weight
        if "node_scores" in info:
            nodes = info["node_scores"] * weight if nodes is None else nodes + info["node_scores"] * weight
    return total, ({"node_scores": nodes} if nodes is not None else {}) | {"batch_size": batch_size}


def _slice_setup(setup: PatchSetup, rows: list[int], width: int) -> PatchSetup:
    """The setup of prompts ``rows``, trimmed to ``width`` positions (causal: earlier positions are unchanged)."""
    def pick(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return (t[rows] if t.shape[0] == setup.tokens.shape[0] else t)[:, :width]

    return dataclasses.replace(setup, tokens=pick(setup.tokens), patched=pick(setup.patched), clean=pick(setup.clean),
                               corrupted_tokens=pick(setup.corrupted_tokens))


def _candidates(model: Any, setup: PatchSetup, metric: Any, k: int) -> torch.Tensor:
    g = setup.graph
    nodes = node_attribution(model, setup, metric).abs().cpu()
    keep = set(torch.argsort(nodes, descending=True)[:k].tolist())
    rows = torch.tensor([i in keep for i in range(g.n_senders)])
    cols = torch.tensor([r == "logits" or g.sender_index(g.receiver_node(r)) in keep for r in g.receivers])
    return rows[:, None] & cols[None, :]
