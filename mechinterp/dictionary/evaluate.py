"""Evaluating an SAE: sparsity, reconstruction, and what splicing it in does to the model.

:func:`evaluate_sae` runs the model on the prompts three ways per batch — clean, with the
reconstruction in place of the site (error dropped), and with the site zero-ablated — and
reports, over the real (non-padding) tokens:

* **L0**: mean number of active latents per token;
* **explained variance**: ``1 - Σ‖x - x̂‖² / Σ‖x - x̄‖²`` (``x̄`` the mean over tokens);
* **CE loss recovered**: ``(CE_zero - CE_spliced) / (CE_zero - CE_clean)`` on next-token
  prediction (1: splicing costs nothing; 0: as bad as deleting the site);
* **KL**: mean ``KL(clean ‖ spliced)`` of the next-token distributions;
* **dead / dense latents** and a histogram of log10 firing frequencies.

Example:
    >>> import mechinterp
    >>> from mechinterp.dictionary import SparseAutoencoder, evaluate_sae
    >>> model = mechinterp.load("zoo:toy-lm")
    >>> sae = SparseAutoencoder(model.cfg.d_model, 64, "topk", k=8, hook_name="blocks.0.hook_resid_post")
    >>> evaluate_sae(model, sae, ["the cat sat on the mat"]).l0
    8.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mechinterp.core.cache import SharedCache
from mechinterp.core.precision import runs_synced
from mechinterp.core.tokens import Prompts, Tokenized, tokenize
from mechinterp.dictionary.results import SAEEvaluation
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.dictionary.splice import splice
from mechinterp.errors import EmptyInputError, MechinterpError
from mechinterp.core.validation import check_count, check_positive, check_token_ids

__all__ = ["evaluate_sae"]


@runs_synced
def evaluate_sae(
    model: Any,
    sae: SparseAutoencoder,
    prompts: Prompts | Tokenized | SharedCache,
    *,
    batch_size: int = 16,
    dense_threshold: float = 0.1,
    n_bins: int = 30,
    skip_first: bool = False,
) -> SAEEvaluation:
    """Sparsity, reconstruction quality and downstream loss of ``sae`` spliced into ``model``.

    Args:
        model: the ``HookedTransformer`` the SAE was trained on.
        sae: the SAE (or transcoder; its output site is replaced and zero-ablated).
        prompts: texts, token ids, a :class:`Tokenized` batch, or a :class:`SharedCache`
            (its prompts are used).
        batch_size: prompts per forward pass.
        dense_threshold: a latent firing on more than this fraction of tokens is dense.
        n_bins: bins of the log10-frequency histogram.
        skip_first: for an SAE trained without position 0 (BOS or a first-token attention
            sink): position 0 is left out of the site statistics (L0, explained variance,
            frequencies) and passes through unchanged when the SAE is spliced or zero-ablated.

    Tokens above the SAE's ``max_input_norm`` are treated like position 0 with ``skip_first``.
    """
    check_count(batch_size, "batch_size")
    check_count(n_bins, "n_bins")
    check_positive(dense_threshold, "dense_threshold")
    if isinstance(prompts, Tensor):
        check_token_ids(model, prompts, "prompts")
    if isinstance(prompts, SharedCache):
        inputs = prompts.inputs
    elif isinstance(prompts, Tokenized):
        inputs = prompts
    else:
        inputs = tokenize(model, prompts)
    if len(inputs) == 0:
        raise EmptyInputError("No prompts to evaluate on.")
    if inputs.padding_side != "right":
        raise MechinterpError("evaluate_sae needs right-padded prompts; tokenize with padding_side='right'.")
    hook_in = sae.hook_name
    hook_out = sae.hook_name_out or hook_in
    if hook_in is None:
        raise MechinterpError("The SAE does not name its hook; set sae.hook_name (e.g. 'blocks.0.hook_resid_post').")
    device = model.cfg.device
    sums = {"ce_clean": 0.0, "ce_spliced": 0.0, "ce_zero": 0.0, "kl": 0.0, "n_pred": 0, "sq_err": 0.0, "l0": 0.0, "n_tok": 0}
    fires = torch.zeros(sae.d_sae, dtype=torch.float64)
    y_sum = torch.zeros(sae.d_out, dtype=torch.float64)
    y_sq = 0.0
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            rows = slice(start, start + batch_size)
            width = int(inputs.lengths[rows].max())
            tokens = inputs.tokens[rows, :width].to(device)
            mask = inputs.attention_mask[rows, :width].to(device).bool()
            seen: dict[str, Tensor] = {}

            def grab(act: Tensor, hook: Any) -> None:
                seen[hook.name] = act

            with model.hooks(fwd_hooks=[(hook_in, grab), (hook_out, grab)]):
                clean = model(tokens)
            with splice(model, sae, keep_error=False, skip_first=skip_first) as state:
                spliced = model(tokens)

            def zero(act: Tensor, hook: Any) -> Tensor:  # the SAE's part of the site (one head, or all)
                vectors = sae.site_vectors(act)
                zeros = torch.zeros_like(vectors)
                if skip_first:
                    zeros[:, :1] = vectors[:, :1]
                if sae.max_input_norm is not None:
                    big = ~sae.in_range(seen[hook_in] if hook_in != hook_out else vectors)
                    zeros[big] = vectors[big]
                return sae.write_site(act, zeros)

            with model.hooks(fwd_hooks=[(hook_out, zero)]):
                zeroed = model(tokens)
            # site statistics over real tokens (position 0 left out with skip_first)
            if skip_first:
                mask = mask.clone()
                mask[:, 0] = False
            if sae.max_input_norm is not None:
                mask = mask & sae.in_range(sae.site_vectors(seen[hook_in]))
            y = sae.site_vectors(seen[hook_out])[mask].double()
            f = state.latents[mask]  # type: ignore[index]
            y_hat = sae.decode(sae.encode(sae.site_vectors(seen[hook_in])[mask])).double()
            sums["sq_err"] += float((y - y_hat.to(y.dtype)).pow(2).sum())
            y_sum += y.sum(0).cpu()
            y_sq += float(y.pow(2).sum())
            active = f > 0
            sums["l0"] += float(active.sum())
            sums["n_tok"] += len(y)
            fires += active.sum(0).double().cpu()
            # next-token losses over real (position, next position) pairs
            real = inputs.attention_mask[rows, :width].to(device).bool()
            pred = real[:, :-1] & real[:, 1:]
            target = tokens[:, 1:]
            logp = {k: torch.log_softmax(v[:, :-1].double(), -1) for k, v in (("c", clean), ("s", spliced), ("z", zeroed))}
            for key, name in (("c", "ce_clean"), ("s", "ce_spliced"), ("z", "ce_zero")):
                nll = -logp[key].gather(-1, target[..., None]).squeeze(-1)
                sums[name] += float(nll[pred].sum())
            kl = (logp["c"].exp() * (logp["c"] - logp["s"])).sum(-1)
            sums["kl"] += float(kl[pred].sum())
            sums["n_pred"] += int(pred.sum())
    n_tok, n_pred = sums["n_tok"], sums["n_pred"]
    total_var = y_sq - float((y_sum**2).sum()) / n_tok
    ce = {k: sums[k] / n_pred if n_pred else math.nan for k in ("ce_clean", "ce_spliced", "ce_zero")}
    denom = ce["ce_zero"] - ce["ce_clean"]
    frequency = (fires / n_tok).tolist()
    freq = np.asarray(frequency)
    live = freq[freq > 0]
    counts, edges = np.histogram(np.log10(live), bins=n_bins) if live.size else (np.zeros(0, int), np.zeros(0))
    return SAEEvaluation(
        hook_name=hook_in if hook_out == hook_in else f"{hook_in} -> {hook_out}", architecture=sae.architecture,
        d_sae=sae.d_sae, n_tokens=n_tok, l0=sums["l0"] / n_tok, explained_variance=1 - sums["sq_err"] / max(total_var, 1e-30),
        mse=sums["sq_err"] / n_tok, ce_clean=ce["ce_clean"], ce_spliced=ce["ce_spliced"], ce_zero_ablation=ce["ce_zero"],
        ce_loss_recovered=(ce["ce_zero"] - ce["ce_spliced"]) / denom if n_pred and abs(denom) > 1e-12 else math.nan,
        kl_spliced=sums["kl"] / n_pred if n_pred else math.nan, dead_fraction=float((freq == 0).mean()),
        dense_fraction=float((freq > dense_threshold).mean()), dense_threshold=dense_threshold, frequency=frequency,
        histogram_edges=edges.tolist(), histogram_counts=[int(c) for c in counts],
    )
