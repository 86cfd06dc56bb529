"""Training sparse autoencoders and transcoders on streamed activations.

Why a config dataclass and a function rather than an sklearn estimator: the artefact people
use after training is the SAE itself (an ``nn.Module`` spliced into the model, saved in the
SAELens format, loaded from elsewhere), not a trainer object. :class:`TrainConfig` holds the
hyper-parameters (``to_dict``/``from_dict``, recorded in the checkpoint), :func:`train_sae`
returns the :class:`~mechinterp.dictionary.SparseAutoencoder`, and the run's history is the
SAE's ``training_log`` (a :class:`~mechinterp.dictionary.TrainingLog` result).

The recipe (each a standard trick, see the docs page):

* inputs are scaled so that the mean squared norm is 1 (scale-free losses and learning
  rates); the scale is folded into the weights at the end, so the saved SAE reads raw
  activations and its decoder rows keep unit norm;
* ``b_dec`` starts at the geometric median (Weiszfeld) or mean of a sample; the encoder
  starts as the decoder's transpose;
* decoder rows stay unit-norm: the gradient's component along each row is removed before
  the Adam step and the rows are renormalised after it;
* sparsity: L1 on the activations (``"standard"``, with a linear warm-up), the top ``k``
  per token (``"topk"``), the top ``k × batch`` per batch (``"batchtopk"``, run afterwards
  as a JumpReLU with the learned global threshold), or a JumpReLU with an L0 penalty through
  a straight-through estimator (``"jumprelu"``);
* dead latents (no activation for ``dead_window`` tokens) get the AuxK loss of Gao et al.
  (2024): the ``aux_k`` largest dead pre-activations must reconstruct the residual error;
  and/or, every ``resample_every`` steps, they are re-initialised as in Anthropic's April
  2023 update: each dead latent's decoder row becomes a (centred) input drawn with
  probability proportional to its squared reconstruction loss, its encoder column that
  direction scaled to ``resample_encoder_scale`` × the mean norm of the live encoder
  columns, its bias 0, and its Adam moments are reset;
* the learning rate decays linearly to 0 over the last 20% of the steps.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mechinterp.core.cache import SharedCache
from mechinterp.core.sites import SiteSpec
from mechinterp.dictionary.activations import ActivationStream
from mechinterp.dictionary.results import TrainingLog
from mechinterp.dictionary.sae import SparseAutoencoder
from mechinterp.errors import MechinterpError, NonFiniteError
from mechinterp.core.validation import check_count, check_finite, check_positive

__all__ = ["TrainConfig", "train_sae", "geometric_median"]

TRAIN_ARCHITECTURES = ("standard", "topk", "batchtopk", "jumprelu")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one SAE (or transcoder) training run.

    Attributes:
        architecture: ``"topk"`` (default), ``"batchtopk"``, ``"standard"`` (ReLU + L1) or
            ``"jumprelu"``.
        d_sae: latents; default ``expansion_factor × d_in``.
        expansion_factor: used when ``d_sae`` is ``None``.
        k: active latents per token for TopK / BatchTopK (mean over the batch).
        l1_coefficient: weight of the L1 penalty (``"standard"``) on scaled inputs.
        l0_coefficient: weight of the L0 penalty (``"jumprelu"``).
        jumprelu_bandwidth, jumprelu_init_threshold: of the straight-through estimator (on
            inputs scaled to unit mean squared norm).
        lr: Adam learning rate; default ``2e-4 / sqrt(d_sae / 16384)`` (Gao et al.'s scaling).
        batch_size: tokens per step. n_epochs: passes over the data.
        buffer_size: tokens in the shuffle buffer (the host-memory bound).
        b_dec_init: ``"geometric_median"``, ``"mean"`` or ``"zeros"``.
        normalize_activations: scale inputs to unit mean squared norm while training.
        dead_window: tokens without firing after which a latent counts as dead
            (default: a quarter of the run, at most 10M).
        aux_k: dead latents used by the AuxK loss (default ``min(d_in // 2, d_sae)``);
            ``0`` switches the auxiliary loss off. aux_coefficient: its weight (1/32).
        resample_every: every this many steps, re-initialise the dead latents from badly
            reconstructed inputs (Anthropic, April 2023); ``None`` (default) never. Resampling
            stops after 80% of the steps (the learning-rate decay).
        resample_encoder_scale: norm of a resampled encoder column relative to the mean norm
            of the live ones (0.2, as Anthropic).
        l1_warmup_fraction: share of the steps over which the L1/L0 weight ramps up.
        log_every: steps between entries of the training log. seed: initialisation seed.
        device: where to train (``"cuda"`` on a GPU).
        progress: show a progress bar.
        skip_first: leave position 0 of every prompt out of training (BOS, or a first-token
            attention sink; see :class:`ActivationStream`).
        max_norm: leave tokens whose input norm is larger out of training (massive
            activations; see :class:`ActivationStream`); the trained SAE's
            ``max_input_norm`` is set to it, so it encodes none of them.
    """

    architecture: str = "topk"
    d_sae: int | None = None
    expansion_factor: int = 8
    k: int = 32
    l1_coefficient: float = 5.0
    l0_coefficient: float = 1.0
    jumprelu_bandwidth: float = 0.001
    jumprelu_init_threshold: float = 0.001
    lr: float | None = None
    batch_size: int = 4096
    n_epochs: int = 1
    buffer_size: int = 2**16
    b_dec_init: str = "geometric_median"
    normalize_activations: bool = True
    dead_window: int | None = None
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32
    resample_every: int | None = None
    resample_encoder_scale: float = 0.2
    l1_warmup_fraction: float = 0.05
    log_every: int = 10
    seed: int = 0
    device: str = "cpu"
    progress: bool = False
    skip_first: bool = False
    max_norm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def check(self) -> None:
        if self.architecture not in TRAIN_ARCHITECTURES:
            raise MechinterpError(f"architecture must be one of {TRAIN_ARCHITECTURES}, got {self.architecture!r}.")
        if self.b_dec_init not in ("geometric_median", "mean", "zeros"):
            raise MechinterpError(f"b_dec_init must be 'geometric_median', 'mean' or 'zeros', got {self.b_dec_init!r}.")
        for name in ("n_epochs", "batch_size", "k", "buffer_size", "expansion_factor", "log_every"):
            check_count(getattr(self, name), name)
        for name in ("d_sae", "dead_window", "resample_every"):
            check_count(getattr(self, name), name, none_ok=True)
        check_count(self.aux_k, "aux_k", none_ok=True, minimum=0, hint="0 switches the AuxK loss off.")
        for name in ("l1_coefficient", "l0_coefficient", "aux_coefficient", "l1_warmup_fraction", "jumprelu_init_threshold",
                     "resample_encoder_scale"):
            check_positive(getattr(self, name), name, allow_zero=True)
        check_positive(self.jumprelu_bandwidth, "jumprelu_bandwidth")
        if self.lr is not None:
            check_positive(self.lr, "lr")
        if self.n_epochs < 1 or self.batch_size < 1 or self.k < 1:
            raise MechinterpError("n_epochs, batch_size and k must be at least 1.")


def geometric_median(x: Tensor, iters: int = 30, eps: float = 1e-8) -> Tensor:
    """The point minimising the summed Euclidean distance to the rows of ``x`` (Weiszfeld)."""
    median = x.mean(0)
    for _ in range(iters):
        weights = 1.0 / (x - median).norm(dim=-1).clamp_min(eps)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        if (new - median).norm() < 1e-7 * (median.norm() + 1e-12):
            return new
        median = new
    return median


def train_sae(
    source: SharedCache | Tensor | ActivationStream,
    site: SiteSpec | None = None,
    config: TrainConfig | None = None,
    *,
    site_out: SiteSpec | None = None,
    head: int | None = None,
    **overrides: Any,
) -> SparseAutoencoder:
    """Train a sparse autoencoder (or, with ``site_out``, a transcoder) on a site's activations.

    Args:
        source: a :class:`SharedCache` (with ``site``), a tensor of activations ``[..., d]``,
            an ``(input, output)`` tensor pair (transcoder), or an :class:`ActivationStream`.
        site: the cache site to read, e.g. ``("resid_post", 1)``.
        config: the hyper-parameters (default :class:`TrainConfig()`).
        site_out: the output site of a transcoder, e.g. ``("mlp_out", 1)`` with
            ``site=("mlp_in", 1)`` (or ``("resid_mid", 1)`` / ``("ln2_normalized")``...).
        head: for a per-head site (``("z", 1)``...), train on this head only; by default a
            per-head site is read with all heads flattened (SAELens's ``hook_z`` SAEs).
        **overrides: fields of :class:`TrainConfig` to override.

    Returns:
        The trained :class:`SparseAutoencoder`, reading raw (unscaled) activations; its
        ``training_log`` holds the loss, explained variance and L0 over training.

    Example:
        >>> import mechinterp
        >>> from mechinterp.dictionary import train_sae
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> cache = mechinterp.SharedCache(model, ["the cat sat on the mat"] * 8)
        >>> sae = train_sae(cache, ("resid_post", 0), k=4, expansion_factor=2, batch_size=16)
        >>> sae.training_log.explained_variance[-1] > 0  # doctest: +SKIP
        True
    """
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    config.check()
    if isinstance(source, Tensor):
        check_finite(source, "source")
    device = torch.device(config.device)
    if isinstance(source, ActivationStream):
        stream = source
    else:
        stream = ActivationStream(source, site, site_out=site_out, batch_size=config.batch_size,
                                  buffer_size=config.buffer_size, seed=config.seed, device=device, head=head,
                                  skip_first=config.skip_first, max_norm=config.max_norm)
    d_sae = config.d_sae or config.expansion_factor * stream.d_in
    is_topk = config.architecture in ("topk", "batchtopk")
    if is_topk and config.k > d_sae:
        raise MechinterpError(f"k={config.k} exceeds d_sae={d_sae}; choose k <= d_sae.")
    torch.manual_seed(config.seed)
    transcoder = stream.paired
    sae = SparseAutoencoder(
        stream.d_in, d_sae, "jumprelu" if config.architecture in ("jumprelu", "batchtopk") else config.architecture,
        k=config.k if config.architecture == "topk" else None, d_out=stream.d_out if transcoder else None,
        hook_name=stream.hook_name, hook_name_out=stream.hook_name_out,
        apply_b_dec_to_input=not transcoder,
        model_name=_model_name(source), device=device,
        reshape_activations="hook_z" if stream.per_head and stream.head is None else "none",
        hook_head_index=stream.head if stream.per_head else None,
    )
    # ---- scaling and bias init from a sample
    sample = stream.sample(min(stream.n_tokens, 8192))
    x0, y0 = (sample if transcoder else (sample, sample))
    if not (torch.isfinite(x0).all() and torch.isfinite(y0).all()):
        raise NonFiniteError("The activations contain NaN or inf; check the model and the cached site.")
    s_in = float(x0.pow(2).sum(-1).mean().rsqrt()) if config.normalize_activations else 1.0
    s_out = float(y0.pow(2).sum(-1).mean().rsqrt()) if config.normalize_activations and transcoder else s_in
    with torch.no_grad():
        if config.b_dec_init == "geometric_median":
            sae.b_dec.copy_(geometric_median(y0[:4096] * s_out))
        elif config.b_dec_init == "mean":
            sae.b_dec.copy_((y0 * s_out).mean(0))
        if config.architecture in ("jumprelu", "batchtopk"):
            sae.threshold.fill_(config.jumprelu_init_threshold if config.architecture == "jumprelu" else 0.0)
    del sample, x0, y0

    n_steps = config.n_epochs * math.ceil(stream.n_tokens / config.batch_size)
    total_tokens = config.n_epochs * stream.n_tokens
    dead_window = config.dead_window or max(config.batch_size, min(10_000_000, total_tokens // 4))
    aux_k = min(stream.d_out // 2, d_sae) if config.aux_k is None else config.aux_k
    lr = config.lr or 2e-4 / math.sqrt(d_sae / 16384)
    params = [p for name, p in sae.named_parameters() if not (name == "threshold" and config.architecture == "batchtopk")]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
    decay_from = int(0.8 * n_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 1.0 if s < decay_from else max(0.0, (n_steps - s) / max(1, n_steps - decay_from))
    )
    since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    fired_ever = torch.zeros(d_sae, dtype=torch.bool, device=device)
    batch_threshold = torch.zeros((), dtype=torch.float64, device=device)
    log: dict[str, list[float]] = {k: [] for k in ("step", "tokens", "loss", "mse", "l0", "explained_variance", "dead_fraction")}
    n_resampled = 0
    resample_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    warmup = max(1, int(config.l1_warmup_fraction * n_steps))
    bar = tqdm(total=n_steps, desc="training SAE", disable=not config.progress, leave=False)
    start, step, tokens = time.perf_counter(), 0, 0
    try:
        for _epoch in range(config.n_epochs):
            for batch in stream:
                x, y = (batch if transcoder else (batch, batch))
                x, y = x * s_in, y * s_out
                pre = sae.pre_activations(x)
                f = _sparse(sae, pre, config, batch_threshold)
                y_hat = sae.decode(f)
                err = y_hat - y
                mse = err.pow(2).sum(-1).mean()
                loss = mse
                sparsity_weight = min(1.0, (step + 1) / warmup)
                if config.architecture == "standard":
                    loss = loss + sparsity_weight * config.l1_coefficient * (f * sae.W_dec.norm(dim=-1)).sum(-1).mean()
                elif config.architecture == "jumprelu":
                    l0 = _Step.apply(pre, sae.threshold, config.jumprelu_bandwidth).sum(-1).mean()
                    loss = loss + sparsity_weight * config.l0_coefficient * l0
                active = (f > 0)
                since_fired += len(x)
                since_fired[active.any(0)] = 0
                fired_ever |= active.any(0)
                dead = since_fired >= dead_window
                if aux_k > 0 and bool(dead.any()):
                    loss = loss + config.aux_coefficient * _aux_loss(sae, pre, dead, aux_k, (y - y_hat).detach(), mse.detach())
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"The loss became {float(loss)} at step {step}; lower lr (now {lr:.2g}).")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                _remove_parallel_grad(sae)
                optimizer.step()
                schedule.step()
                with torch.no_grad():
                    sae.W_dec.div_(sae.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))
                    if config.architecture == "jumprelu":
                        sae.threshold.clamp_(min=0.0)
                    if config.architecture == "batchtopk" and bool(active.any()):
                        smallest = f[active].min().to(torch.float64)
                        batch_threshold.mul_(0.99).add_(0.01 * smallest) if step else batch_threshold.fill_(smallest)
                if (config.resample_every and step and step % config.resample_every == 0 and step < decay_from
                        and bool(dead.any())):
                    n_resampled += _resample_dead(sae, optimizer, dead, x, y, err.detach(), config.resample_encoder_scale,
                                                  resample_generator)
                    since_fired[dead] = 0
                tokens += len(x)
                if step % config.log_every == 0 or step == n_steps - 1:
                    with torch.no_grad():
                        var = (y - y.mean(0)).pow(2).sum()
                        log["step"].append(step)
                        log["tokens"].append(tokens)
                        log["loss"].append(float(loss))
                        log["mse"].append(float(mse))
                        log["l0"].append(float(active.sum(-1).float().mean()))
                        log["explained_variance"].append(float(1 - err.pow(2).sum() / var.clamp_min(1e-12)))
                        log["dead_fraction"].append(float(dead.float().mean()))
                step += 1
                bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        if config.architecture == "batchtopk":
            sae.threshold.fill_(float(batch_threshold))
        # fold the input/output scales: raw activations in, raw activations out, unit-norm decoder
        sae.W_enc.mul_(s_in / s_out)
        sae.b_enc.div_(s_out)
        sae.b_dec.div_(s_out)
        if sae.architecture == "jumprelu":
            sae.threshold.div_(s_out)
    sae.requires_grad_(False)
    sae.max_input_norm = stream.max_norm
    sae.training_log = TrainingLog(
        architecture=config.architecture, hook_name=stream.hook_name, hook_name_out=stream.hook_name_out,
        d_in=stream.d_in, d_sae=d_sae, n_steps=step, n_tokens=tokens, seconds=seconds,
        tokens_per_second=tokens / max(seconds, 1e-9), lr=lr, scale_in=s_in, scale_out=s_out,
        never_fired_fraction=float((~fired_ever).float().mean()), n_resampled=n_resampled, config=config.to_dict(), **log,
    )
    return sae


def _sparse(sae: SparseAutoencoder, pre: Tensor, config: TrainConfig, batch_threshold: Tensor) -> Tensor:
    if config.architecture == "batchtopk":
        flat = pre.relu().flatten()
        values, indices = torch.topk(flat, k=min(flat.numel(), config.k * pre.shape[0]), sorted=False)
        return torch.zeros_like(flat).scatter_(0, indices, values).view_as(pre)
    if config.architecture == "jumprelu":
        return _JumpReLU.apply(pre, sae.threshold, config.jumprelu_bandwidth)
    return sae.activate(pre)


def _aux_loss(sae: SparseAutoencoder, pre: Tensor, dead: Tensor, aux_k: int, residual: Tensor, mse: Tensor) -> Tensor:
    """AuxK (Gao et al. 2024): the top ``aux_k`` dead latents reconstruct the residual error."""
    k = min(aux_k, int(dead.sum()))
    masked = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
    values, indices = torch.topk(masked, k=k, dim=-1, sorted=False)
    f_aux = torch.zeros_like(pre).scatter_(-1, indices, values.relu())
    recon = f_aux @ sae.W_dec
    return (recon - residual).pow(2).sum(-1).mean() / mse.clamp_min(1e-12)


@torch.no_grad()
def _resample_dead(sae: SparseAutoencoder, optimizer: torch.optim.Optimizer, dead: Tensor, x: Tensor, y: Tensor,
                   err: Tensor, encoder_scale: float, generator: torch.Generator) -> int:
    """Anthropic's resampling (April 2023 update) of the ``dead`` latents from the batch ``(x, y)``.

    Inputs are drawn with probability ∝ their squared loss ``‖err‖²``; a dead latent's decoder
    row becomes the drawn target minus ``b_dec``, normalised; its encoder column the drawn
    input (minus ``b_dec`` when the SAE subtracts it) normalised and scaled to
    ``encoder_scale`` × the mean norm of the live encoder columns; its encoder bias 0; Adam's
    moments of all three are zeroed. Returns the number of latents resampled.
    """
    index = dead.nonzero().flatten()
    weights = err.pow(2).sum(-1).pow(2)  # the squared loss of each input
    if not bool((weights > 0).any()):
        return 0
    rows = torch.multinomial(weights, len(index), replacement=True, generator=generator)
    direction = y[rows] - sae.b_dec
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    enc_in = x[rows] - sae.b_dec if sae.apply_b_dec_to_input else x[rows]
    enc_in = enc_in / enc_in.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    alive = ~dead
    scale = float(sae.W_enc[:, alive].norm(dim=0).mean()) if bool(alive.any()) else 1.0
    sae.W_dec[index] = direction
    sae.W_enc[:, index] = (encoder_scale * scale * enc_in).T
    sae.b_enc[index] = 0.0
    for param, where in ((sae.W_dec, (index,)), (sae.W_enc, (slice(None), index)), (sae.b_enc, (index,))):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][where] = 0.0
    return len(index)


@torch.no_grad()
def _remove_parallel_grad(sae: SparseAutoencoder) -> None:
    grad = sae.W_dec.grad
    if grad is not None:
        w = sae.W_dec
        grad.sub_((grad * w).sum(-1, keepdim=True) * w)


def _rectangle(x: Tensor) -> Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class _Step(torch.autograd.Function):
    """Heaviside ``1[z > θ]`` with the straight-through pseudo-gradient for θ (Rajamanoharan et al. 2024)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        z, threshold = ctx.saved_tensors
        g = -(1.0 / ctx.bandwidth) * _rectangle((z - threshold) / ctx.bandwidth) * grad
        return None, g.reshape(-1, z.shape[-1]).sum(0), None


class _JumpReLU(torch.autograd.Function):
    """``z · 1[z > θ]`` with the straight-through pseudo-gradient for θ."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold).to(z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        z, threshold = ctx.saved_tensors
        g_threshold = -(threshold / ctx.bandwidth) * _rectangle((z - threshold) / ctx.bandwidth) * grad
        return (z > threshold).to(z) * grad, g_threshold.reshape(-1, z.shape[-1]).sum(0), None


def _model_name(source: Any) -> str | None:
    model = getattr(source, "model", None)
    return getattr(getattr(model, "cfg", None), "model_name", None) if model is not None else None
