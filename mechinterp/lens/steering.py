"""Steering vectors: activation addition (Turner et al. 2023) and contrastive activation addition (Rimsky et al. 2024).

A steering vector ``v`` at a residual site is added, times a scale, to the residual of
chosen positions during a forward pass or generation. The contrastive vector is the mean
difference of the site's activation between two prompt sets (e.g. positive minus
negative reviews, at each prompt's last token), collected through the shared cache; any
other direction (a probe's) can be wrapped with :meth:`SteeringVector.from_direction`.

:func:`steering_sweep` measures a task over layer × scale: the fraction of prompts whose
prediction reaches the target label, next to the same sweep with a random vector of
equal norm (the control: a vector that works only by its size moves predictions too).

Hooks go through :func:`steering_hooks`, a context manager on TransformerLens's
``model.hooks`` that removes them on exit, also on error. Each vector is one ``add``
:class:`~mechinterp.core.intervention.Intervention` (:func:`steering_intervention`): the
value ``scale * vector`` (with a batch dimension for per-prompt scales) at every position,
at positions shared by every prompt, or at each prompt's own positions.

Example:
    >>> import mechinterp
    >>> from mechinterp.lens import contrastive_vector, steering_hooks
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> v = contrastive_vector(model, ["Review : the food was great . Sentiment :"],
    ...                        ["Review : the food was terrible . Sentiment :"], layer=1)
    >>> with steering_hooks(model, v, scale=1.0):
    ...     logits = model("Review : the food was terrible . Sentiment :")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.intervention import Intervention
from mechinterp.core.precision import runs_synced, synced_dtype
from mechinterp.core.results import AbstractResult
from mechinterp.core.sites import resolve
from mechinterp.core.tokens import tokenize
from mechinterp.errors import EmptyInputError, MechinterpError, ShapeMismatchError
from mechinterp.lens.readout import answer_ids
from mechinterp.lens.results import SteeringSweep
from mechinterp.viz import escape, table_html
from mechinterp.core.validation import check_count, check_finite, check_ids, check_token_ids

__all__ = ["SteeringVector", "contrastive_vector", "steering_hooks", "steering_intervention", "steered_generate", "steering_sweep"]


@dataclass(frozen=True)
class SteeringVector(AbstractResult):
    """A direction to add at one hook.

    Attributes:
        vector: ``[d_model]``.
        hook: the TransformerLens hook name it is added at.
        label: what it encodes (``"positive - negative"``).
        n_positive, n_negative: prompts behind a contrastive vector (0 for a given direction).
    """

    vector: Float[Tensor, " d_model"]
    hook: str
    label: str = ""
    n_positive: int = 0
    n_negative: int = 0

    def __post_init__(self) -> None:
        vec = torch.as_tensor(self.vector, dtype=torch.float32).detach().cpu()
        if vec.ndim != 1 or not bool(torch.isfinite(vec).all()):
            raise MechinterpError(f"A steering vector must be one finite [d_model] vector, got shape {tuple(vec.shape)}.")
        object.__setattr__(self, "vector", vec)

    @classmethod
    def from_direction(cls, model: Any, direction: Tensor, layer: int, site: str = "resid_post", label: str = "") -> SteeringVector:
        """Wrap any direction (a probe's weight, a mass-mean difference) for ``site`` at ``layer``."""
        hook = resolve(model, site, layer)[0]
        direction = torch.as_tensor(direction).float().flatten()
        if direction.shape[0] != model.cfg.d_model:
            raise ShapeMismatchError(f"direction has {direction.shape[0]} entries; d_model is {model.cfg.d_model}.")
        return cls(direction, hook, label or "direction")

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def plot(self, ax: Any = None) -> Any:
        from mechinterp.viz import pyplot

        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 2.5))
        else:
            fig = ax.figure
        ax.bar(range(len(self.vector)), self.vector.numpy())
        ax.set_title(f"{self.label} at {self.hook} (norm {self.norm:.3g})", fontsize=10)
        ax.set_xlabel("residual dimension")
        ax.set_ylabel("component")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        rows = [{"hook": self.hook, "label": self.label, "norm": self.norm, "positive prompts": self.n_positive,
                 "negative prompts": self.n_negative}]
        return f"<section><h3>Steering vector {escape(self.label)}</h3>{table_html(rows)}</section>"


@runs_synced
def contrastive_vector(
    model: Any,
    positive: Any,
    negative: Any,
    layer: int,
    *,
    site: str = "resid_post",
    positions: Any = "last",
    batch_size: int = 32,
) -> SteeringVector:
    """Mean activation over ``positive`` prompts minus the mean over ``negative`` prompts.

    Args:
        model: a ``HookedTransformer``.
        positive, negative: prompts (or SharedCaches of this model with one position per prompt).
        layer: the layer of ``site``.
        site: a residual-shaped site (``resid_pre``/``resid_mid``/``resid_post``/``attn_out``/``mlp_out``).
        positions: which position per prompt to average (``"last"`` by default).
        batch_size: prompts per forward pass.
    """
    check_count(batch_size, "batch_size")
    for name, value in (("positive", positive), ("negative", negative)):
        if isinstance(value, Tensor):
            check_token_ids(model, value, name)
    hook = resolve(model, site, layer)[0]

    def mean(inputs: Any) -> tuple[Tensor, int]:
        cache = inputs if isinstance(inputs, SharedCache) else SharedCache(model, inputs, positions=positions, batch_size=batch_size)
        acts = cache[hook].float()
        if acts.ndim == 3:  # several positions per prompt: average them
            acts = acts.mean(1)
        if acts.ndim != 2 or acts.shape[-1] != model.cfg.d_model:
            raise MechinterpError(f"{site} is not a residual-shaped site ([batch, d_model]); use resid_post, attn_out or mlp_out.")
        return acts.mean(0), acts.shape[0]

    pos_mean, n_pos = mean(positive)
    neg_mean, n_neg = mean(negative)
    return SteeringVector(pos_mean - neg_mean, hook, "positive - negative", n_pos, n_neg)


@contextmanager
def steering_hooks(
    model: Any,
    vector: SteeringVector | Sequence[SteeringVector],
    scale: float | Tensor = 1.0,
    positions: str | Sequence[int] | Tensor = "all",
) -> Iterator[Any]:
    """Add ``scale * vector`` to the model's activations inside the ``with`` block.

    Args:
        model: a ``HookedTransformer``.
        vector: one or several :class:`SteeringVector` (each added at its own hook).
        scale: a number, or ``[batch]`` per-prompt scales.
        positions: ``"all"`` (every position, also those generated later), a list of
            positions (of the sequence each forward pass sees: when generating with a list,
            pass ``use_past_kv_cache=False`` so every pass sees the whole sequence), or a
            ``[batch]`` tensor of per-prompt indices (e.g. each prompt's last real token).

    Hooks are removed on exit, also when the block raises. Inside the block a model cast with
    ``model.half()`` runs as after ``model.to(torch.float16)`` (:func:`~mechinterp.core.precision.synced_dtype`).
    """
    vectors = [vector] if isinstance(vector, SteeringVector) else list(vector)
    if not vectors:
        raise EmptyInputError("No steering vector given.")
    for v in vectors:
        if v.hook not in model.hook_dict:
            raise MechinterpError(f"The vector's hook {v.hook!r} is not a hook of this model.")
        if v.vector.shape[0] != model.cfg.d_model:
            raise ShapeMismatchError(f"The vector has {v.vector.shape[0]} entries; d_model is {model.cfg.d_model}.")
    scale_t = torch.as_tensor(scale, dtype=torch.float32)
    if not bool(torch.isfinite(scale_t).all()):
        raise MechinterpError(f"scale must be finite, got {scale!r}.")
    if isinstance(positions, str) and positions != "all":
        raise MechinterpError(f"positions must be 'all', a list of positions or per-prompt indices, got {positions!r}.")

    if isinstance(positions, str):
        where: Any = None
    elif isinstance(positions, Tensor):  # one index per prompt
        where = positions.long().reshape(-1, 1)
    else:
        where = [int(p) for p in positions]
    interventions = [steering_intervention(v, scale_t, where) for v in vectors]
    with synced_dtype(model), model.hooks(fwd_hooks=[iv.fwd_hook() for iv in interventions]):
        yield model


def steering_intervention(vector: SteeringVector, scale: float | Tensor = 1.0, positions: Any = None) -> Intervention:
    """``scale * vector`` added at ``vector.hook`` as a :class:`~mechinterp.core.intervention.Intervention`.

    Args:
        vector: the steering vector.
        scale: a number, or ``[batch]`` per-prompt scales (a value with a batch dimension).
        positions: ``None`` (every position, also those generated later), indices shared by
            every prompt, or per-prompt indices (``[batch, k]``); see
            :meth:`Intervention.at <mechinterp.core.intervention.Intervention.at>`.
    """
    scale_t = torch.as_tensor(scale, dtype=torch.float32)
    value = scale_t.view(-1, 1, 1) * vector.vector if scale_t.ndim == 1 else scale_t * vector.vector  # [batch, 1, d] or [d]
    return Intervention.at(vector.hook, value, positions=positions, mode="add")


@runs_synced
def steered_generate(
    model: Any, prompt: str, vector: SteeringVector | Sequence[SteeringVector], scale: float = 1.0,
    max_new_tokens: int = 20, **generate_kwargs: Any,
) -> str:
    """Greedy generation (by default) with the vector added at every position."""
    check_count(max_new_tokens, "max_new_tokens")
    if not isinstance(scale, Tensor):
        check_finite(scale, "scale")
    generate_kwargs.setdefault("do_sample", False)
    generate_kwargs.setdefault("verbose", False)
    with steering_hooks(model, vector, scale):
        return model.generate(prompt, max_new_tokens=max_new_tokens, **generate_kwargs)


@runs_synced
def steering_sweep(
    model: Any,
    prompts: Sequence[str],
    vectors: dict[int, SteeringVector],
    scales: Sequence[float],
    *,
    target: str | int,
    other: str | int,
    positions: str = "all",
    n_random: int = 1,
    seed: int = 0,
    batch_size: int = 32,
) -> SteeringSweep:
    """Steer ``prompts`` at every layer × scale and measure whether they reach ``target``.

    The metric is ``logit(target) - logit(other)`` at each prompt's last real token;
    success means it is positive (the prediction between the two labels is ``target``).

    Args:
        model: a ``HookedTransformer``.
        prompts: the prompts to steer (usually held-out prompts whose label is ``other``).
        vectors: layer -> steering vector (e.g. ``contrastive_vector`` at each layer).
        scales: multipliers of the vector.
        target, other: the two label tokens (strings or ids).
        positions: ``"all"`` (every position) or ``"last"`` (each prompt's last real token).
        n_random: random vectors (of the same norm) per layer for the control.
        seed: seed of the random vectors.
        batch_size: prompts per forward pass.
    """
    check_count(batch_size, "batch_size")
    check_count(n_random, "n_random", minimum=0)
    for name, value in (("target", target), ("other", other)):
        if not isinstance(value, str):
            check_ids(value, model.cfg.d_vocab, name)
    if not vectors or not scales:
        raise EmptyInputError("Give at least one layer's vector and one scale.")
    if positions not in ("all", "last"):
        raise MechinterpError(f"positions must be 'all' or 'last', got {positions!r}.")
    batch = tokenize(model, list(prompts))
    t_id, o_id = (int(answer_ids(model, [a], 1)[0]) for a in (target, other))
    layers = sorted(vectors)
    gen = torch.Generator().manual_seed(seed)

    def run(vec: SteeringVector | None, scale: float) -> Tensor:
        values = []
        for start in range(0, len(batch), batch_size):
            sl = slice(start, start + batch_size)
            width = int(batch.lengths[sl].max())
            tokens = batch.tokens[sl, :width].to(model.cfg.device)
            last = batch.last_pos[sl]
            with torch.inference_mode():
                if vec is None:
                    logits = model(tokens)
                else:
                    pos = "all" if positions == "all" else last.to(model.cfg.device)
                    with steering_hooks(model, vec, scale, pos):
                        logits = model(tokens)
            rows = torch.arange(tokens.shape[0])
            final = logits[rows, last.to(logits.device)].float()
            values.append((final[:, t_id] - final[:, o_id]).cpu())
        return torch.cat(values)

    baseline = float((run(None, 0.0) > 0).float().mean())
    success = torch.zeros(len(layers), len(scales))
    metric = torch.zeros(len(layers), len(scales))
    random_success = torch.zeros(len(layers), len(scales))
    norms = torch.zeros(len(layers))
    for i, layer in enumerate(layers):
        vec = vectors[layer]
        norms[i] = vec.norm
        randoms = []
        for _ in range(n_random):
            r = torch.randn(vec.vector.shape[0], generator=gen)
            randoms.append(SteeringVector(r / r.norm() * vec.norm, vec.hook, "random"))
        for j, s in enumerate(scales):
            values = run(vec, float(s))
            success[i, j] = (values > 0).float().mean()
            metric[i, j] = values.mean()
            random_success[i, j] = torch.stack([(run(r, float(s)) > 0).float().mean() for r in randoms]).mean() if randoms else float("nan")
    label = f"towards {model.to_single_str_token(t_id)!r} vs {model.to_single_str_token(o_id)!r}" if model.tokenizer else ""
    return SteeringSweep(layers=layers, scales=[float(s) for s in scales], success=success, metric=metric,
                         random_success=random_success, baseline_success=baseline, norms=norms, label=label)
