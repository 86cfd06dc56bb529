"""Patching: activation patching, path patching, causal tracing and attribution patching.

All batched: patched runs are stacked along the batch, start at the patched layer (and
position) from cached activations, and are chunked to a memory budget; results equal
TransformerLens's ``patching`` functions and the one-run-per-patch loop.

Example:
    >>> import mechinterp
    >>> from mechinterp.patching import activation_patch
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("ioi", model, n=16)
    >>> activation_patch(model, task, site="z", by="head").top(3)  # doctest: +SKIP
"""

from mechinterp.patching.activation import activation_patch, patch_block_every, patch_heads_by_pos_every, patch_heads_every
from mechinterp.patching.attribution import AttributionComparison, attribution_patch, compare_with_exact
from mechinterp.patching.inputs import PatchInputs, prepare_patch_inputs
from mechinterp.patching.path import path_patch
from mechinterp.patching.result import PatchResult
from mechinterp.patching.tracing import causal_trace

__all__ = [
    "AttributionComparison",
    "PatchInputs",
    "PatchResult",
    "activation_patch",
    "attribution_patch",
    "causal_trace",
    "compare_with_exact",
    "path_patch",
    "patch_block_every",
    "patch_heads_by_pos_every",
    "patch_heads_every",
    "prepare_patch_inputs",
]
