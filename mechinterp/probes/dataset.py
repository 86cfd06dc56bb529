"""Labelled prompts to activations: the dataset a probe is fitted on.

:func:`collect_activations` runs the model once over the prompts through the shared
cache (:class:`mechinterp.SharedCache`: batched, a progress bar, sites over
``memory_budget`` spilled to disk and read back memory-mapped) and keeps, per layer, the
activation at the chosen token positions:

* ``"last"`` — each prompt's last real token;
* ``"all"`` — every position (a probe per position; padding is masked out);
* ``3`` or ``[0, -1]`` — fixed indices (negative ones count from each prompt's end);
* ``"Sentiment"`` — a named token: its first occurrence in each prompt;
* ``slice(1, None)`` — the mean over a span of each prompt;
* ``[[4], [5, 9], ...]`` — per-prompt positions (one list per prompt), averaged
  (e.g. ``task.ground_truth.positions``).

Means (a named token, a span, per-prompt lists) are taken batch by batch inside the shared
cache, so only one ``[n, d]`` vector per layer is stored, never the ``[n, pos, d]``
activations they are computed from.

:func:`from_task` takes prompts and labels from a :mod:`mechinterp.tasks` task
(``task.ground_truth.labels``); :func:`read_labelled_csv` reads a ``text,label[,type]``
file.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> task = mechinterp.tasks.load("sentiment", model, n=64)
    >>> data = from_task(model, task, "sentiment", positions="last")
    >>> data.x(layer=3).shape  # doctest: +SKIP
    torch.Size([64, 128])
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from mechinterp.core.validation import check_task
from mechinterp.core.cache import SharedCache
from mechinterp.core.deprecation import renamed_keyword
from mechinterp.core.precision import runs_synced
from mechinterp.core.sites import layer_of, resolve_many
from mechinterp.core.tokens import Tokenized, tokenize
from mechinterp.errors import MechinterpError, TokenizationError, UnknownSiteError
from mechinterp.probes.validation import ProbeInputError, check_n_labels, encode_labels

__all__ = ["ProbeDataset", "collect_activations", "from_task", "read_labelled_csv"]

Position = str | int | slice | Sequence[int] | Sequence[Sequence[int]]


@dataclass
class ProbeDataset:
    """Activations at one site over several layers, with one label per example.

    Attributes:
        features: per layer, ``[n, positions, d]`` (memory-mapped when spilled), in the model's
            dtype (bf16/fp16 activations are kept as they are, half the memory; every fit and
            :meth:`x` reads them as float32).
        y: int class codes (classification) or float targets (regression), ``[n]``.
        classes: the label values the codes stand for, or ``None`` for regression.
        hook_names: the TransformerLens hook of each entry of ``features``.
        layers: the layer of each hook (``-1`` for embedding hooks).
        position_labels: one name per position (``["last"]``, ``["0", "1", ...]``).
        mask: ``[n, positions]``, which (example, position) pairs exist (``"all"`` on
            ragged prompts), or ``None`` when all do.
        types: per example, the "word type" that Hewitt & Liang control labels are tied to.
        texts: the prompts, when given as text.
        cache: ``(shared cache, None)``: the cache the activations came from, held so that its
            spilled files stay alive as long as the dataset (the second slot, once a temporary
            folder for spilled means, is unused since the means are reduced inside the cache).
    """

    features: list[Float[Tensor, "n positions d"]]
    y: np.ndarray
    classes: list[Any] | None
    hook_names: list[str]
    layers: list[int]
    position_labels: list[str]
    mask: Bool[Tensor, "n positions"] | None = None
    types: list[str] = field(default_factory=list)
    texts: list[str] | None = None
    cache: Any = None

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def d(self) -> int:
        return int(self.features[0].shape[-1])

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    def x(self, layer: int | None = None, position: int = 0) -> Float[Tensor, "n d"]:
        """Features ``[n, d]`` of one layer (default: the last collected) and position index.

        Always float32 (a copy when the model ran in bf16/fp16, whose activations are stored
        as they came): probes are fitted on float32 or float64 numbers.
        """
        index = len(self.layers) - 1 if layer is None else self._layer_index(layer)
        x = self.features[index][:, position]
        return x.float() if x.dtype != torch.float64 else x

    def _layer_index(self, layer: int) -> int:
        if layer in self.layers:
            return self.layers.index(layer)
        if -len(self.layers) <= layer < 0 and layer not in self.layers:
            return self.layers.index(sorted(self.layers)[layer])
        raise UnknownSiteError(f"Layer {layer} was not collected; this dataset has layers {self.layers}.")

    def labels(self) -> list[Any]:
        """The labels as given (decoded class values, or the targets)."""
        return [self.classes[int(c)] for c in self.y] if self.classes is not None else self.y.tolist()

    def subset(self, rows: Sequence[int] | np.ndarray) -> ProbeDataset:
        """The examples ``rows`` (features copied into memory)."""
        idx = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        return replace(
            self,
            features=[f[idx] for f in self.features],
            y=self.y[idx.numpy()],
            mask=None if self.mask is None else self.mask[idx],
            types=[self.types[i] for i in idx.tolist()] if self.types else [],
            texts=[self.texts[i] for i in idx.tolist()] if self.texts else None,
        )


@runs_synced
def collect_activations(
    model: Any,
    prompts: Sequence[str] | Tensor | Tokenized,
    labels: Sequence[Any],
    *,
    site: str = "resid_post",
    layers: int | Sequence[int] | None = None,
    positions: Position = "last",
    types: Sequence[Any] | None = None,
    target: str = "auto",
    batch_size: int = 32,
    memory_budget: int | float | str | None = None,
    spill_dir: str | Path | None = None,
    progress: bool | None = None,
    position: Position | None = None,
) -> ProbeDataset:
    """Run ``model`` over labelled prompts and keep the activations a probe needs.

    Args:
        model: a ``HookedTransformer``.
        prompts: texts, token ids ``[batch, pos]``, or a :class:`Tokenized` batch.
        labels: one label per prompt (class values, or floats for regression).
        site: a per-layer short site name (``"resid_post"``, ``"attn_out"``,
            ``"mlp_post"``, ``"z"``...) or a full hook name. Heads are flattened.
        layers: layers to collect (default: all).
        positions: which tokens (see the module docstring); the same keyword as
            :class:`~mechinterp.SharedCache`'s and the other families'.
        types: per prompt, the word type for control tasks (default: the prompt itself,
            i.e. control labels are random per prompt).
        target: ``"auto"``, ``"classification"`` or ``"regression"``.
        batch_size, memory_budget, spill_dir, progress: passed to the shared cache;
            activations over ``memory_budget`` are spilled to disk.
        position: deprecated old name of ``positions``.

    Returns:
        A :class:`ProbeDataset`.

    Raises:
        ProbeShapeError: labels not one per prompt. SingleClassError: one class.
        UnknownSiteError: a site the model does not have. TokenizationError: a named
        token missing from a prompt.
    """
    n_prompts = len(prompts) if not isinstance(prompts, (str, Tensor)) else (1 if isinstance(prompts, str) else prompts.shape[0])
    check_n_labels(len(labels), n_prompts)
    y, classes = encode_labels(labels, target)
    if types is not None:
        check_n_labels(len(types), n_prompts, "types")
    hooks = resolve_many(model, site, layers)
    if any(h.endswith(("hook_pattern", "hook_attn_scores")) for h in hooks):
        raise UnknownSiteError(f"Cannot probe {site!r}: attention patterns have no per-token vector. Use resid_post, z or attn_out.")
    positions = renamed_keyword(positions, position, "position", "positions", default="last")
    mode, shared, per_prompt = _positions(positions)
    inputs = prompts if isinstance(prompts, Tokenized) else tokenize(model, prompts)
    n = len(inputs)
    mask = None
    if mode == "named":
        per_prompt = [[_find_token(model, inputs, i, str(positions))] for i in range(n)]
    elif mode == "span":
        per_prompt = [list(range(int(inputs.lengths[i])))[positions] for i in range(n)]  # type: ignore[index]
        empty = [i for i, p in enumerate(per_prompt) if not p]
        if empty:
            raise ProbeInputError(f"The span {positions} is empty for prompt {empty[0]}; choose a span inside every prompt.")
    elif mode == "per_prompt":
        check_n_labels(len(per_prompt), n, "position lists")
    if per_prompt is not None:
        # the mean over each prompt's positions is taken batch by batch in the shared cache: only
        # [n, d] per layer is ever stored, never the [n, pos, d] activations it is computed from
        shared = _mean_weights(inputs, per_prompt)
    cache = SharedCache(model, inputs, positions=shared, batch_size=batch_size, memory_budget=memory_budget,
                        spill_dir=spill_dir, progress=progress)
    cache.fetch(hooks)
    features = []
    for hook in hooks:
        act = cache.get(hook)
        if mode in ("all", "indices"):
            feats = act.reshape(n, act.shape[1], -1)
        else:  # "last" and the means: one vector per prompt
            feats = act.reshape(n, 1, -1)
        features.append(feats)
    if mode == "all":
        mask = cache.attention_mask.bool()
    labels_pos = {"last": ["last"], "named": [str(positions)], "span": [f"mean{_span_str(positions)}"],
                  "per_prompt": ["mean(given)"], "all": [str(i) for i in range(features[0].shape[1])],
                  "indices": [str(i) for i in shared] if mode == "indices" else []}[mode]
    texts = list(prompts) if isinstance(prompts, Sequence) and not isinstance(prompts, str) else None
    type_list = [str(t) for t in types] if types is not None else ([str(t) for t in texts] if texts else [str(i) for i in range(n)])
    return ProbeDataset(
        features=features, y=y, classes=classes, hook_names=hooks,
        layers=[layer_of(h) if layer_of(h) is not None else -1 for h in hooks], position_labels=labels_pos,
        mask=mask, types=type_list, texts=texts, cache=(cache, None),
    )


def from_task(model: Any, task: Any, label: str, **kwargs: Any) -> ProbeDataset:
    """Activations of a :mod:`mechinterp.tasks` task's clean prompts, labelled by ``task.ground_truth.labels[label]``.

    The control-task word type of each prompt is its first ground-truth token (the
    sentiment word, the indirect object's name, the country), unless ``types`` is given.
    ``positions="key"`` probes at the ground-truth positions (averaged).

    Example:
        >>> data = from_task(model, mechinterp.tasks.load("facts", model, n=32), "country")  # doctest: +SKIP
    """
    check_task(model, task)
    available = task.ground_truth.labels
    if label not in available:
        raise MechinterpError(f"Task {task.name!r} has no label {label!r}; it has {sorted(available)}.")
    batch = Tokenized(task.clean_tokens, (torch.arange(task.clean_tokens.shape[1])[None] < task.lengths[:, None]).long(),
                      task.lengths, "right")
    positions = task.ground_truth.positions
    if "types" not in kwargs and positions and all(positions):
        kwargs["types"] = [model.to_string(task.clean_tokens[i, p[0]]) for i, p in enumerate(positions)]
    if "position" in kwargs:  # deprecated old name
        kwargs["positions"] = renamed_keyword(kwargs.pop("positions", None), kwargs.pop("position"), "position", "positions")
    if isinstance(kwargs.get("positions"), str) and kwargs["positions"] == "key":
        kwargs["positions"] = positions
    data = collect_activations(model, batch, available[label], **kwargs)
    data.texts = list(task.clean_prompts)
    return data


def read_labelled_csv(path: str | Path) -> tuple[list[str], list[Any], list[str] | None]:
    """Read a CSV with a header ``text,label`` (and optionally ``type``).

    Labels that all parse as integers become ints, as numbers floats, else strings.

    Returns:
        ``(texts, labels, types or None)``.
    """
    path = Path(path)
    if not path.exists():
        raise MechinterpError(f"No such CSV file: {path}.")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "text" not in rows[0] or "label" not in rows[0]:
        raise ProbeInputError(f"{path} needs a header row with columns 'text' and 'label' (and optionally 'type').")
    texts = [r["text"] for r in rows]
    raw = [r["label"].strip() for r in rows]
    labels: list[Any]
    for cast in (int, float):
        try:
            labels = [cast(v) for v in raw]
            break
        except ValueError:
            continue
    else:
        labels = raw
    types = [r["type"] for r in rows] if "type" in rows[0] else None
    return texts, labels, types


# --------------------------------------------------------------------------- helpers
def _positions(positions: Position) -> tuple[str, Any, list[list[int]] | None]:
    """(mode, what the shared cache keeps, per-prompt index lists)."""
    if isinstance(positions, str):
        if positions in ("last", "all"):
            return positions, positions, None
        return "named", "all", None
    if isinstance(positions, slice):
        return "span", "all", None
    if isinstance(positions, (int, np.integer)):
        return "indices", [int(positions)], None
    items = list(positions)
    if not items:
        raise ProbeInputError("positions is an empty list: give 'last', 'all', indices, a token, a span or per-prompt lists.")
    if all(isinstance(p, (int, np.integer)) for p in items):
        return "indices", [int(p) for p in items], None
    if all(isinstance(p, Sequence) for p in items):
        return "per_prompt", "all", [[int(i) for i in p] for p in items]
    raise ProbeInputError(f"Cannot read positions={positions!r}; see the docstring of collect_activations.")


def _find_token(model: Any, inputs: Tokenized, i: int, name: str) -> int:
    tokens = list(model.to_str_tokens(inputs.tokens[i][inputs.attention_mask[i].bool()]))
    words = [t.strip() for t in tokens]
    if name.strip() not in words:
        raise TokenizationError(f"The token {name!r} does not occur in prompt {i} ({tokens}): "
                                "pick a token that every prompt contains, or pass per-prompt positions.")
    return words.index(name.strip())


def _mean_weights(inputs: Tokenized, per_prompt: list[list[int]]) -> Float[Tensor, "n pos"]:
    """Weights ``[n, pos]`` over the padded positions whose weighted sum is the mean of ``per_prompt[i]``.

    Positions count from each prompt's first real token.
    """
    n, width = inputs.tokens.shape
    weights = torch.zeros(n, width)
    for i, pos in enumerate(per_prompt):
        length = int(inputs.lengths[i])
        if not pos:
            raise ProbeInputError(f"The position list of prompt {i} is empty; give at least one position per prompt.")
        if min(pos) < 0 or max(pos) >= length:
            raise ProbeInputError(f"Position {pos} is outside prompt {i} (which has {length} tokens).")
        start = width - length if inputs.padding_side == "left" else 0
        weights[i, [start + p for p in pos]] = 1.0 / len(pos)
    return weights


def _span_str(position: Any) -> str:
    return f"[{position.start}:{position.stop}]" if isinstance(position, slice) else ""
