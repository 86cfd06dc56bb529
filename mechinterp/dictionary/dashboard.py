"""Latent dashboards: max-activating examples, activation density and logit effects, as offline HTML.

For each chosen latent of an SAE, the page shows what a Neuronpedia-style feature card shows:

* the top-``k`` dataset contexts, tokens coloured by the latent's activation
  (:func:`mechinterp.features.max_activating_examples` with the latent as its target, reading
  one :class:`~mechinterp.core.cache.SharedCache` of the prompts: one forward pass in all);
* how often it fires (fraction of tokens with a positive activation) and a histogram of its
  positive activations (inline SVG), over the same tokens as the examples (BOS left out when
  the model prepends one);
* the tokens its decoder direction promotes and suppresses (:func:`logit_effects`).

The HTML has no script and no external reference: it opens offline.

Example:
    >>> import mechinterp
    >>> from mechinterp.dictionary import SparseAutoencoder, latent_dashboard
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.1.hook_resid_post")
    >>> dash = latent_dashboard(model, sae, ["the cat sat on the mat", "a dog ran"], [0, 5], k=3)
    >>> dash.save("latents.html")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.core.validation import check_count, check_token_ids
from mechinterp.dictionary.feature_results import LogitEffects
from mechinterp.dictionary.latent_dla import logit_effects
from mechinterp.dictionary.latents import check_latents, latent_label, sae_hooks, site_width
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError
from mechinterp.features import ActivationTarget, MaxActivations, max_activating_examples
from mechinterp.viz import escape, html_page, pyplot, table_html

__all__ = ["LatentDashboard", "latent_dashboard"]


@dataclass(frozen=True, eq=False)
class LatentDashboard(AbstractResult):
    """Feature cards for some latents of one SAE.

    Attributes:
        hook: the SAE's input hook.
        latents: the latents shown.
        examples: per latent, its max-activating contexts.
        density: ``[latent]`` fraction of scanned tokens where the latent is positive (BOS excluded
            when the model prepends one, as for the examples).
        max_activation: ``[latent]`` its largest activation.
        hist_counts: ``[latent, bins]`` histogram of its positive activations.
        hist_edges: ``[latent, bins + 1]`` the bin edges.
        logit_effects: the latents' promoted / suppressed tokens (``None`` when the SAE's output
            is not in the residual stream).
        n_tokens: tokens scanned.
    """

    hook: str
    latents: list[int]
    examples: list[MaxActivations]
    density: Tensor
    max_activation: Tensor
    hist_counts: Tensor
    hist_edges: Tensor
    logit_effects: LogitEffects | None
    n_tokens: int

    def __post_init__(self) -> None:
        for name in ("density", "max_activation", "hist_counts", "hist_edges"):
            object.__setattr__(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float32))
        if not len(self.latents) == len(self.examples) == self.density.shape[0]:
            raise MechinterpError("LatentDashboard needs one set of examples and one density per latent.")

    def card(self, latent: int) -> str:
        """One latent's card (HTML fragment)."""
        if latent not in self.latents:
            raise MechinterpError(f"latent {latent} is not on this dashboard; it shows {self.latents}.")
        j = self.latents.index(latent)
        stats = table_html([{"density": float(self.density[j]), "max activation": float(self.max_activation[j]),
                             "tokens scanned": self.n_tokens}])
        logits = table_html(self.logit_effects.rows(latent)) if self.logit_effects is not None else ""
        return (f"<section class='latent-card' id='latent-{latent}'><h3>Latent {latent} "
                f"<span class='muted'>{escape(self.hook)}</span></h3>{stats}"
                f"<div><div class='muted'>positive activations</div>{_svg_histogram(self.hist_counts[j], self.hist_edges[j])}</div>"
                f"{logits}{self.examples[j].to_html()}</section>")

    def to_html(self) -> str:
        summary = table_html([{"latent": i, "density": float(d), "max activation": float(m)}
                              for i, d, m in zip(self.latents, self.density, self.max_activation)])
        cards = "".join(self.card(i) for i in self.latents)
        return f"<section><h2>Latent dashboard: {escape(self.hook)}</h2>{summary}</section>{cards}"

    def to_page(self, title: str | None = None) -> str:
        """A complete offline HTML page."""
        return html_page(title or f"latents at {self.hook}", self.to_html())

    def save(self, path: Any) -> Any:
        """JSON (``.json``) or a complete offline page (``.html``), written atomically."""
        from pathlib import Path

        from mechinterp.core.atomic import write_text

        if Path(path).suffix == ".html":
            return write_text(Path(path), self.to_page())
        return super().save(path)

    def plot(self, ax: Any = None) -> Any:
        plt = pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3))
        else:
            fig = ax.figure
        ax.bar([str(i) for i in self.latents], self.density.numpy(), color="#dc322f")
        ax.set_xlabel("latent")
        ax.set_ylabel("density")
        ax.set_title(f"latent density at {self.hook}")
        fig.tight_layout()
        return fig


def _svg_histogram(counts: Tensor, edges: Tensor, width: int = 240, height: int = 60) -> str:
    """An inline SVG bar chart (no script, no external reference)."""
    n = len(counts)
    top = float(counts.max()) if n and float(counts.max()) > 0 else 1.0
    bar = width / max(n, 1)
    rects = "".join(
        f"<rect x='{i * bar:.1f}' y='{height - height * float(c) / top:.1f}' width='{max(bar - 1, 1):.1f}' "
        f"height='{height * float(c) / top:.1f}' fill='#dc322f'><title>{float(edges[i]):.3g}-{float(edges[i + 1]):.3g}: "
        f"{int(c)}</title></rect>"
        for i, c in enumerate(counts)
    )
    return f"<svg class='hist' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{rects}</svg>"


@runs_synced
def latent_dashboard(
    model: Any,
    sae: SparseAutoencoder,
    inputs: Any,
    latents: Any,
    *,
    k: int = 10,
    n_logits: int = 10,
    bins: int = 20,
    batch_size: int = 32,
    hook_name: str | None = None,
    skip_first: bool | None = None,
) -> LatentDashboard:
    """Feature cards for ``latents``: max-activating examples, density, histogram, logit effects.

    Args:
        model: a ``HookedTransformer``.
        sae: the SAE (or transcoder: examples are read at its input hook).
        inputs: prompts, token ids, or a ``positions="all"`` :class:`SharedCache` of this model.
        latents: the latents to show (indices).
        k: examples per latent.
        n_logits: promoted / suppressed tokens per latent.
        bins: histogram bins.
        batch_size: prompts per forward pass.
        hook_name: the SAE's hook when it does not name one.
        skip_first: leave position 0 out of the examples and statistics (default: when the
            model prepends BOS; pass ``True`` for a model whose first token is an attention sink).

    Tokens above the SAE's ``max_input_norm`` are left out of the examples and statistics.
    """
    check_count(k, "k")
    check_count(n_logits, "n_logits")
    check_count(bins, "bins")
    check_count(batch_size, "batch_size")
    if isinstance(inputs, Tensor):
        check_token_ids(model, inputs, "inputs")
    hook_in, hook_out = sae_hooks(model, sae, hook_name)
    chosen = check_latents(sae, latents)
    if isinstance(inputs, SharedCache):
        if inputs.model is not model or not (isinstance(inputs.positions, str) and inputs.positions == "all"):
            raise MechinterpError("inputs: pass a SharedCache of this model built with positions='all' (or the prompts).")
        cache = inputs
    else:
        cache = SharedCache(model, inputs, positions="all", batch_size=batch_size, progress=False)
    cache.fetch([hook_in])
    if skip_first is None:
        skip_first = bool(model.cfg.default_prepend_bos)  # as max_activating_examples: BOS (the attention sink) is left out
    examples = [max_activating_examples(model, cache, _target(sae, hook_in, i), k=k, batch_size=batch_size,
                                        skip_first=skip_first) for i in chosen]
    density, peak, counts, edges, n_tokens = _statistics(cache, sae, hook_in, chosen, bins, batch_size, skip_first)
    residual = site_width(model, hook_out) == model.cfg.d_model and not hook_out.endswith(("hook_mlp_in", "hook_attn_in"))
    effects = logit_effects(model, sae, chosen, k=n_logits, hook_name=hook_name) if residual else None
    return LatentDashboard(hook=hook_in, latents=chosen, examples=examples, density=density, max_activation=peak,
                           hist_counts=counts, hist_edges=edges, logit_effects=effects, n_tokens=n_tokens)


def _target(sae: SparseAutoencoder, hook: str, latent: int) -> ActivationTarget:
    def reduce(act: Tensor) -> Tensor:  # [batch, pos, d_in] -> [batch, pos] (0 above the SAE's max_input_norm)
        return sae.encode(act.to(sae.W_enc.device))[..., latent]

    return ActivationTarget(hook, reduce, f"latent {latent_label(sae, latent)}")


def _statistics(cache: SharedCache, sae: SparseAutoencoder, hook: str, chosen: list[int], bins: int,
                batch_size: int, skip_first: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Density, max and a histogram of positive activations per latent, over the real tokens of the cache."""
    acts = cache[hook]
    mask = cache.attention_mask.bool().clone()
    if skip_first:
        mask[:, 0] = False
    values: list[Tensor] = []
    with torch.no_grad():
        for start in range(0, len(cache), batch_size):
            block = acts[start : start + batch_size].to(sae.W_enc.device)
            f = sae.encode(block)[..., chosen].float().cpu()
            keep = mask[start : start + batch_size]
            if sae.max_input_norm is not None:  # massive activations: not this SAE's tokens
                keep = keep & sae.in_range(block).cpu()
            values.append(f[keep])  # [real tokens, n]
    f = torch.cat(values)
    n_tokens = f.shape[0]
    positive = f > 0
    density = positive.float().mean(0) if n_tokens else torch.zeros(len(chosen))
    peak = f.max(0).values if n_tokens else torch.zeros(len(chosen))
    counts, edges = torch.zeros(len(chosen), bins), torch.zeros(len(chosen), bins + 1)
    for j in range(len(chosen)):
        pos_vals = f[positive[:, j], j]
        hi = float(pos_vals.max()) if len(pos_vals) else 1.0
        edges[j] = torch.linspace(0.0, hi, bins + 1)
        if len(pos_vals):
            counts[j] = torch.histc(pos_vals, bins=bins, min=0.0, max=hi)
    return density, peak, counts, edges, n_tokens
