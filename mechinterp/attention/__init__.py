"""Attention analysis: pattern views, head detection, rollout, flow, gradient-weighted rollout.

* :func:`attention_patterns` — one prompt's patterns with offline circuitsvis views (a layer's
  heads, one head, tokens coloured by a query's attention) and static heatmap grids;
* :func:`head_scores` — previous-token, induction, duplicate-token and first-token scores
  per (layer, head), on your inputs or on generated probe sequences;
* :func:`attention_rollout` (Abnar & Zuidema, 2020), :func:`attention_flow` (same paper,
  max-flow), :func:`gradient_rollout` (Chefer et al., 2021) — token-to-token maps with a
  per-input-token vector (:class:`AttentionMap`) comparable with the attribution methods.

On pretrained models pass ``sink="first"`` to rollout, flow, gradient rollout and head
detection: the first token takes most of the attention there (:mod:`mechinterp.attention.sinks`).
Every entry point runs on bf16/fp16 models and computes in float32.

Patterns are read through :class:`mechinterp.SharedCache` (``positions="all"``), so a cache
already holding them costs no forward pass. Every result is a frozen dataclass with
``plot()``, ``to_html()``, ``to_dict()``, ``save()`` and a notebook display.

Example:
    >>> import mechinterp
    >>> from mechinterp import attention
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> attention.head_scores(model).top("induction")  # doctest: +SKIP
    >>> attention.attention_rollout(model, "t1 t2 t3 t1 t2").scores()  # doctest: +SKIP
"""

from mechinterp.attention.figures import plot_pattern_grid, save_figure
from mechinterp.attention.flow import FlowTooLargeError, attention_flow, max_flow_matrix
from mechinterp.attention.gradient import gradient_rollout, relevance_from_gradients
from mechinterp.attention.heads import HEAD_KINDS, HeadScores, detection_patterns, head_scores, probe_sequences, score_heads
from mechinterp.attention.maps import AttentionMap
from mechinterp.attention.patterns import AttentionPatterns, attention_patterns
from mechinterp.attention.render import OfflineView, circuitsvis_html, external_references
from mechinterp.attention.rollout import augment_with_residual, attention_rollout, fuse_heads, rollout_from_patterns
from mechinterp.attention.sinks import SINK_MODES, exclude_sinks

__all__ = [
    "HEAD_KINDS",
    "AttentionMap",
    "AttentionPatterns",
    "FlowTooLargeError",
    "HeadScores",
    "OfflineView",
    "SINK_MODES",
    "attention_flow",
    "attention_patterns",
    "attention_rollout",
    "augment_with_residual",
    "circuitsvis_html",
    "detection_patterns",
    "exclude_sinks",
    "external_references",
    "fuse_heads",
    "gradient_rollout",
    "head_scores",
    "max_flow_matrix",
    "plot_pattern_grid",
    "probe_sequences",
    "relevance_from_gradients",
    "rollout_from_patterns",
    "save_figure",
    "score_heads",
]
