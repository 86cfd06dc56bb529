"""Causal checks: does the model *use* the direction a probe found?

A probe can read a property the model never uses. Two interventions at the probed site
test it, through TransformerLens hooks (always removed, also on error):

* **project out** — ``x <- x - (x . u) u`` with ``u`` the unit probe direction: the
  model no longer sees any component along it. If the model uses the direction, its task
  metric drops towards 0 (predictions become unsure or flip).
* **steer** — ``x <- x + scale * sign_i * v``: move along the (unnormalised) direction
  ``v``. With the mass-mean direction ``v = mu_1 - mu_0``, ``scale = -1`` and
  ``sign_i = +1 / -1`` for class 1 / class 0 moves each example's class mean onto the
  other's, so a model that uses the direction flips its prediction.

Projecting out random directions (``n_random``) is the control: it should move the
metric much less. A prediction counts as flipped when the sign of the task metric
(correct − wrong logit) differs from the clean run's.

Example:
    >>> probe = MassMeanProbe().fit(data.x(3).numpy(), data.y)  # doctest: +SKIP
    >>> result = causal_check(model, task, probe.means_[1] - probe.means_[0], layer=3,
    ...                       signs=2 * data.y - 1, scales=[-1.0, -0.5, 0.5])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.metrics import Metric
from mechinterp.core.intervention import Intervention
from mechinterp.core.precision import runs_synced
from mechinterp.core.validation import check_count, check_task, check_token_ids
from mechinterp.core.sites import resolve
from mechinterp.errors import MechinterpError, ShapeMismatchError
from mechinterp.probes.controls import random_directions
from mechinterp.probes.results import CausalResult
from mechinterp.probes.validation import check_finite

__all__ = ["project_out", "steer", "run_with_direction", "causal_check"]


def project_out(x: Float[Tensor, "... d_model"], direction: Float[Tensor, " d_model"]) -> Float[Tensor, "... d_model"]:
    """``x`` with its component along ``direction`` removed (``direction`` need not be unit)."""
    u = direction / direction.norm()
    return x - (x @ u)[..., None] * u


def steer(x: Float[Tensor, "batch pos d_model"], direction: Float[Tensor, " d_model"], scale: Float[Tensor, " batch"]) -> Tensor:
    """``x + scale_i * direction`` for each prompt ``i``."""
    return x + scale[:, None, None] * direction


@runs_synced
def run_with_direction(
    model: Any,
    tokens: Int[Tensor, "batch pos"],
    hook_name: str,
    direction: Float[Tensor, " d_model"],
    *,
    mode: str = "project",
    scale: Float[Tensor, " batch"] | float = 1.0,
    positions: str | Int[Tensor, " batch"] = "all",
    batch_size: int = 32,
) -> Float[Tensor, "batch pos d_vocab"]:
    """Logits with the direction projected out of (``mode="project"``) or added to (``"add"``) ``hook_name``.

    Args:
        positions: ``"all"`` or one position per prompt (e.g. the answer position).
    """
    tokens = check_token_ids(model, tokens, "tokens")
    check_count(batch_size, "batch_size")
    if mode not in ("project", "add"):
        raise MechinterpError(f"mode must be 'project' or 'add', got {mode!r}.")
    device = model.cfg.device
    direction = torch.as_tensor(direction).detach().float()
    check_finite(direction, "direction")
    if float(direction.norm()) == 0:
        raise MechinterpError("The direction is the zero vector: fit the probe first, on two or more classes.")
    n = tokens.shape[0]
    scales = torch.as_tensor(scale, dtype=torch.float32).expand(n) if torch.as_tensor(scale).ndim == 0 else torch.as_tensor(scale, dtype=torch.float32)
    if scales.shape != (n,):
        raise ShapeMismatchError(f"scale has {scales.shape[0]} entries for {n} prompts: pass one per prompt or a number.")
    outs = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(n, start + batch_size))
        batch_pos = None if isinstance(positions, str) else torch.as_tensor(positions)[rows]

        def new_value(act: Tensor) -> Tensor:  # act: [batch, pos, d_model]
            if act.shape[-1] != direction.shape[0]:
                raise ShapeMismatchError(f"The direction has {direction.shape[0]} dims but {hook_name} has {act.shape[-1]}.")
            # In float32 whatever the model's dtype, rounded once: after projecting out, what is left
            # along the direction is one rounding of the model's dtype, not the error of a bf16 dot product.
            x, v = act.float(), direction.to(act.device)
            return project_out(x, v) if mode == "project" else steer(x, v, scales[rows].to(act.device))

        keep = None  # every position, else [batch, pos, 1]: each prompt's own position
        if batch_pos is not None:
            keep = torch.zeros(rows.stop - rows.start, tokens.shape[1], 1, dtype=torch.bool, device=device)
            keep[torch.arange(keep.shape[0]), batch_pos.to(device)] = True
        intervention = Intervention(hook_name, keep, new_value, mode="replace")
        with torch.no_grad(), model.hooks(fwd_hooks=[intervention.fwd_hook()]):
            outs.append(model(tokens[rows].to(device)).cpu())
    return torch.cat(outs)


@runs_synced
def causal_check(
    model: Any,
    task: Any,
    direction: Float[Tensor, " d_model"] | np.ndarray,
    *,
    layer: int,
    site: str = "resid_post",
    scales: Sequence[float] = (-2.0, -1.0, -0.5, 0.5, 1.0),
    signs: Sequence[float] | np.ndarray | None = None,
    positions: str = "all",
    tokens: Int[Tensor, "batch pos"] | None = None,
    metric: Metric | None = None,
    n_random: int = 3,
    seed: int = 0,
    batch_size: int = 32,
) -> CausalResult:
    """Project a probe direction out of ``site`` at ``layer`` and steer along it; measure the task metric.

    Args:
        model: the ``HookedTransformer``.
        task: a :class:`mechinterp.tasks.Task` (its clean tokens, metric and answer
            positions), or ``None`` with ``tokens`` and ``metric`` given.
        metric: a function of the logits ``[batch, pos, vocab]`` giving ``[batch]``; with a
            task it replaces ``task.metric``.
        direction: ``[d_model]``; projected out as a unit vector, added unnormalised.
        layer, site: where to intervene (a residual-stream-shaped site).
        scales: steering scales.
        signs: per prompt, multiplies the scale (e.g. ``2 * labels - 1`` to push every
            example against its own class with negative scales); default all +1.
        positions: ``"all"`` positions, or ``"last"`` (each prompt's answer position).
        n_random: random directions projected out as the control.

    Returns:
        A :class:`~mechinterp.probes.results.CausalResult`.
    """
    hook_name = resolve(model, site, layer)[0]
    check_count(batch_size, "batch_size")
    check_count(n_random, "n_random", minimum=0)
    if task is not None:
        check_task(model, task)
        tokens, metric = task.clean_tokens, (task.metric if metric is None else metric)
        last = task.answer_pos
    elif tokens is None or metric is None:
        raise MechinterpError("Pass a task, or both tokens and metric.")
    else:
        tokens = check_token_ids(model, tokens, "tokens")
        last = torch.full((tokens.shape[0],), tokens.shape[1] - 1)
    pos: str | Tensor = "all" if positions == "all" else last
    if positions not in ("all", "last"):
        raise MechinterpError(f"positions must be 'all' or 'last', got {positions!r}.")
    direction = direction.detach().float().cpu() if isinstance(direction, Tensor) else torch.as_tensor(np.asarray(direction, dtype=np.float32))
    n = tokens.shape[0]
    sign = torch.ones(n) if signs is None else torch.as_tensor(np.asarray(signs, dtype=np.float32))
    if sign.shape != (n,):
        raise ShapeMismatchError(f"signs has {sign.shape[0]} entries for {n} prompts: pass one per prompt.")
    with torch.no_grad():
        clean = torch.cat([model(tokens[i : i + batch_size].to(model.cfg.device)).cpu() for i in range(0, n, batch_size)])
    m_clean = metric(clean).float()  # metrics in float32 whatever the model's dtype
    run = lambda **kw: metric(run_with_direction(model, tokens, hook_name, direction=kw.pop("direction", direction),  # noqa: E731
                                                 positions=pos, batch_size=batch_size, **kw)).float()
    flip = lambda m: float((torch.sign(m) != torch.sign(m_clean)).float().mean())  # noqa: E731
    m_proj = run(mode="project")
    rand = [run(mode="project", direction=u) for u in random_directions(direction.shape[0], n_random, seed)] if n_random else []
    steered = [run(mode="add", scale=s * sign) for s in scales]
    return CausalResult(
        hook_name=hook_name, positions=positions, metric_clean=float(m_clean.mean()),
        metric_projected=float(m_proj.mean()), flip_projected=flip(m_proj),
        metric_random=float(torch.stack(rand).mean()) if rand else float("nan"),
        flip_random=float(np.mean([flip(r) for r in rand])) if rand else float("nan"),
        scales=[float(s) for s in scales], metric_steered=[float(m.mean()) for m in steered],
        flip_steered=[flip(m) for m in steered], n_prompts=n,
    )
