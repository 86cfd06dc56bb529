"""Grad-CAM for transformers: which token positions a layer's activations use for a target.

Grad-CAM (Selvaraju et al., 2017) weights each channel ``k`` of a layer's activation map by
its gradient averaged over the map's locations and keeps the positive part. For a
transformer the locations are token positions and the channels the hidden units: with
``A = [pos, d_model]`` a layer's token activations (``blocks.{l}.hook_resid_post`` by
default) and ``F`` the target,

    α_k   = (1/P) Σ_i ∂F/∂A_{i,k}                   (the gradient averaged over the positions)
    cam_i = ReLU(Σ_k α_k A_{i,k})

per layer, and ``combined`` = the mean over layers of each layer's map divided by its sum
(layers whose map is all zero are left out), so every layer counts the same.

**Where it equals gradient × activation.** Gradient × activation at position ``i`` is
``Σ_k ∂F/∂A_{i,k} A_{i,k}``. When the gradient is the same at every position
(``∂F/∂A_{i,k} = g_k`` for all ``i``: ``F`` reads the mean or sum of the activations over
positions through a linear map, or there is a single position), ``α = g`` and Grad-CAM is
exactly ``ReLU(gradient × activation)``; the result carries ``grad_x_act`` so this can be
checked. In a causal LM whose target is read at the last position, the gradient at the
*last layer* is zero at every other position, so there ``cam_i = ReLU(A_i · g_last) / P``:
how much position ``i``'s final residual already points along the target's direction (a
logit-lens-like reading), not how much ``i`` contributed. Measured on zoo:toy-lm (facts,
sentiment, greater-than; ``benchmarks/results/explain.md``), no layer's map puts the
ground-truth token first on more than 13% of prompts, where integrated gradients does on
73-100%: use Grad-CAM to see which positions' activations point along the target's
gradient, not to find the input that matters. ``variant="hirescam"`` (HiResCAM) uses each
position's own gradient: ``ReLU(gradient × activation)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.errors import MechinterpError, NonFiniteError, UnknownSiteError
from mechinterp.explain.common import one_prompt, token_strs
from mechinterp.viz import heatmap, table_html, tokens_html

__all__ = ["GradCam", "grad_cam", "grad_cam_map"]

SITES = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def grad_cam_map(activations: Float[Tensor, "pos d"], gradients: Float[Tensor, "pos d"]
                 ) -> tuple[Float[Tensor, " pos"], Float[Tensor, " pos"]]:
    """Grad-CAM of one layer: ``(ReLU(Σ_k α_k A_{:,k}), Σ_k α_k A_{:,k})`` with ``α = mean_i ∂F/∂A_i``."""
    if activations.shape != gradients.shape or activations.ndim != 2:
        raise MechinterpError(f"activations and gradients must both be [pos, d], got {tuple(activations.shape)} "
                              f"and {tuple(gradients.shape)}.")
    alpha = gradients.mean(0)  # [d]
    raw = activations @ alpha  # [pos]
    return raw.clamp(min=0), raw


@dataclass(frozen=True)
class GradCam(AbstractResult):
    """The result of :func:`grad_cam`.

    Attributes:
        tokens: the prompt's token strings.
        layers: the layers explained (one row each).
        site: the activation site (``resid_post``, ...).
        maps: ``[n_layers, pos]`` Grad-CAM per layer (after the ReLU).
        raw: ``[n_layers, pos]`` the same before the ReLU.
        grad_x_act: ``[n_layers, pos]`` gradient × activation (``Σ_k ∂F/∂A_{i,k} A_{i,k}``) for comparison.
        combined: ``[pos]`` the mean over layers of each layer's map normalised to sum 1.
        target: the target's label; ``target_value``: F(x).
    """

    tokens: list[str]
    layers: list[int]
    site: str
    maps: Float[Tensor, "n_layers pos"]
    raw: Float[Tensor, "n_layers pos"]
    grad_x_act: Float[Tensor, "n_layers pos"]
    combined: Float[Tensor, " pos"]
    target: str
    target_value: float
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("maps", "raw", "grad_x_act", "combined"):
            object.__setattr__(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float32))

    def layer(self, layer: int) -> Float[Tensor, " pos"]:
        """The map of one layer (by layer number)."""
        if layer not in self.layers:
            raise MechinterpError(f"Layer {layer} was not explained; this result has layers {self.layers}.")
        return self.maps[self.layers.index(layer)]

    def top_k(self, k: int = 5, layer: int | None = None) -> list[tuple[int, str, float]]:
        """The ``k`` highest positions as ``(position, token, score)`` of one layer or of ``combined``."""
        row = self.combined if layer is None else self.layer(layer)
        order = torch.argsort(row, descending=True, stable=True)[:k]
        return [(int(i), self.tokens[int(i)], float(row[i])) for i in order]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GradCam):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def plot(self, ax: Any = None) -> Any:
        """A heatmap: layers × tokens (each row as computed, the combined map as the last row)."""
        rows = torch.cat([self.maps / self.maps.amax(-1, keepdim=True).clamp(min=1e-12), self.combined[None] / max(float(self.combined.max()), 1e-12)])
        labels = [f"L{layer}" for layer in self.layers] + ["combined"]
        return heatmap(rows, row_labels=labels, col_labels=[f"{i}:{t}" for i, t in enumerate(self.tokens)], ax=ax,
                       title=f"Grad-CAM ({self.site}, rows scaled to max 1): {self.target}", xlabel="token", ylabel="layer",
                       cbar_label="relevance (row max = 1)", center=False, cmap="Reds", vmin=0.0, vmax=1.0)  # >= 0: ReLU

    def to_html(self) -> str:
        """The combined map and each layer's map as coloured tokens (offline)."""
        lines = tokens_html(self.tokens, self.combined.tolist(), title="combined")
        lines += "".join(tokens_html(self.tokens, self.maps[i].tolist(), title=f"layer {layer}") for i, layer in enumerate(self.layers))
        meta = table_html([{"target": self.target, "F(x)": self.target_value, "site": self.site}])
        return f"<section><h3>Grad-CAM</h3>{meta}{lines}</section>"


def _hook_names(model: Any, site: str, layers: Sequence[int] | None) -> tuple[list[int], list[str]]:
    if site not in SITES:
        raise MechinterpError(f"Unknown Grad-CAM site {site!r}; use one of {SITES}.")
    n = model.cfg.n_layers
    if layers is None:
        layers = list(range(n))
    elif isinstance(layers, int):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise MechinterpError("layers is empty: pass at least one layer, or None for all of them.")
    bad = [layer for layer in layers if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n]
    if bad:
        raise MechinterpError(f"Layers {bad} are out of range for a model of {n} layers (0..{n - 1}).")
    layers = [layer % n for layer in layers]
    names = [f"blocks.{layer}.hook_{site}" for layer in layers]
    missing = [h for h in names if h not in model.hook_dict]
    if missing:
        raise UnknownSiteError(f"The model has no hook {missing[0]!r} (attention-only models have no resid_mid/mlp_out); "
                               "use site='resid_post' or 'resid_pre'.")
    return layers, names


@runs_synced
def grad_cam(model: Any, prompt: str | Tensor, target: Any, *, layers: int | Sequence[int] | None = None,
             site: str = "resid_post", variant: str = "gradcam") -> GradCam:
    """Grad-CAM of ``target`` at a layer's token activations, per layer and combined.

    Args:
        model: a ``HookedTransformer``.
        prompt: a string (BOS prepended as the model does) or ``[pos]`` token ids.
        target: a single target, as :func:`mechinterp.attribution.attribute` takes it
            (``" Paris"``, ``(" Paris", " Rome")``, a function of the logits, a target object).
        layers: layer numbers (negative counts from the end); ``None``: every layer.
        site: ``"resid_post"`` (default), ``"resid_pre"``, ``"resid_mid"``, ``"attn_out"``
            or ``"mlp_out"``.
        variant: ``"gradcam"`` (weights averaged over positions, the default) or
            ``"hirescam"`` (HiResCAM, Draelos & Carin 2020: each position's own gradient,
            ``ReLU(Σ_k ∂F/∂A_{i,k} A_{i,k})`` = ReLU(gradient × activation)).

    Returns:
        A :class:`GradCam` with ``maps [n_layers, pos]``, ``combined [pos]`` and
        ``grad_x_act`` for comparison. One forward and one backward pass.

    Example:
        >>> import mechinterp
        >>> from mechinterp.explain import grad_cam
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> cam = grad_cam(model, "The capital of France is", ("Paris", "Rome"), layers=[0, 1])
        >>> cam.maps.shape
        torch.Size([2, 6])
    """
    from mechinterp.attribution import as_target

    if variant not in ("gradcam", "hirescam"):
        raise MechinterpError(f"variant must be 'gradcam' or 'hirescam', got {variant!r}.")
    tokens = one_prompt(model, prompt, "grad_cam")
    layers, names = _hook_names(model, site, layers)
    bound = as_target(target).bind(model, tokens)
    if bound.n_targets != 1:
        raise MechinterpError(f"grad_cam explains one target; this one has {bound.n_targets} ({bound.labels[:4]}...). "
                              "Pass a NextToken/Contrast/Label target or a metric that returns one value.")
    if bound.n_prompt != len(bound.tokens):
        raise MechinterpError("grad_cam explains the next-token prediction of the prompt; continuation targets are not supported.")
    store: dict[str, Tensor] = {}

    def keep(act: Float[Tensor, "batch pos d_model"], hook: Any) -> Tensor:  # a residual/output site: [batch, pos, d_model]
        store[hook.name] = act
        return act

    with torch.enable_grad(), model.hooks(fwd_hooks=[(name, keep) for name in names]):
        logits = model(bound.tokens[None].to(model.cfg.device))
        if bound.positions is not None:
            logits = logits[:, bound.positions]
        if bound.columns is not None:
            logits = logits[..., bound.columns]
        value = bound.score(logits)[0, 0]
        grads = torch.autograd.grad(value, [store[name] for name in names], allow_unused=True)
    maps, raws, gxa = [], [], []
    for name, grad in zip(names, grads):
        act = store[name][0].detach().float()
        grad = torch.zeros_like(act) if grad is None else grad[0].detach().float()
        cam, raw = grad_cam_map(act, grad)
        if variant == "hirescam":
            raw = (grad * act).sum(-1)
            cam = raw.clamp(min=0)
        maps.append(cam), raws.append(raw), gxa.append((grad * act).sum(-1))
    maps_t = torch.stack(maps).cpu()
    if not torch.isfinite(maps_t).all():
        raise NonFiniteError("Grad-CAM produced non-finite values; check the model and the target.")
    return GradCam(token_strs(model, tokens), layers, site, maps_t, torch.stack(raws).cpu(), torch.stack(gxa).cpu(),
                   combine(maps_t), bound.labels[0], float(value.detach()), {"layers": layers, "site": site, "variant": variant})


def combine(maps: Float[Tensor, "n_layers pos"]) -> Float[Tensor, " pos"]:
    """The mean over layers of each non-zero layer map normalised to sum 1 (zeros if all are zero)."""
    sums = maps.sum(-1, keepdim=True)
    keep = sums.squeeze(-1) > 0
    if not keep.any():
        return torch.zeros(maps.shape[-1])
    return (maps[keep] / sums[keep]).mean(0)
