"""The sparse autoencoder: encoder, sparse activation, decoder, in SAELens's parameter layout.

A sparse autoencoder (Bricken et al. 2023, Cunningham et al. 2023) writes an activation
``x`` as a sparse non-negative combination of learned directions (the rows of ``W_dec``)::

    f     = σ((x - b_dec) @ W_enc + b_enc)          # [..., d_sae], mostly zeros
    x_hat = f @ W_dec + b_dec                        # [..., d_in]
    error = x - x_hat

The activation ``σ`` names the architecture, as in SAELens 6:

* ``"standard"`` — ReLU (trained with an L1 penalty);
* ``"topk"`` — keep the ``k`` largest pre-activations of each row (Gao et al. 2024), ReLU'd;
* ``"jumprelu"`` — ``z · 1[z > θ]`` with a learned threshold per latent (Rajamanoharan et
  al. 2024). A BatchTopK SAE (Bussmann et al. 2024) is trained with a batch-level top-k and
  runs, like SAELens's, as a JumpReLU with one global threshold.

Per-head SAEs read an attention site ``[..., head_index, d_head]`` (``hook_z``...): with
``reshape_activations="hook_z"`` all heads flattened into one ``n_heads × d_head`` vector
(SAELens's layout), with ``hook_head_index=h`` head ``h`` alone; :meth:`site_vectors` and
:meth:`write_site` convert between the site's shape and the SAE's vectors.

Parameters carry SAELens's names and shapes (``W_enc [d_in, d_sae]``, ``b_enc [d_sae]``,
``W_dec [d_sae, d_in]``, ``b_dec [d_in]``, ``threshold [d_sae]``), so a checkpoint loads
in either library (:mod:`mechinterp.dictionary.saelens`).

Example:
    >>> import torch
    >>> from mechinterp.dictionary import SparseAutoencoder
    >>> sae = SparseAutoencoder(d_in=8, d_sae=32, architecture="topk", k=4)
    >>> sae.encode(torch.randn(5, 8)).count_nonzero(-1).tolist()
    [4, 4, 4, 4, 4]
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from mechinterp.errors import MechinterpError, ShapeMismatchError

__all__ = ["ARCHITECTURES", "SparseAutoencoder"]

ARCHITECTURES = ("standard", "topk", "jumprelu")


class SparseAutoencoder(nn.Module):
    """A sparse autoencoder (or, with ``d_out``, a transcoder) over one site's activations.

    Args:
        d_in: width of the input activation.
        d_sae: number of latents.
        architecture: ``"standard"`` (ReLU), ``"topk"`` or ``"jumprelu"``.
        k: latents kept per row (``"topk"`` only).
        d_out: width of the output for a transcoder (default ``d_in``: an autoencoder).
        apply_b_dec_to_input: subtract ``b_dec`` before encoding (SAELens's default; must
            be ``False`` for a transcoder, whose ``b_dec`` lives in the output space).
        hook_name: the TransformerLens hook the SAE reads (and is spliced into).
        hook_name_out: a transcoder's output hook.
        model_name: the model it was trained on (metadata only).
        reshape_activations: ``"none"`` or ``"hook_z"`` (the site is ``[..., head_index,
            d_head]`` and the SAE reads all heads flattened).
        hook_head_index: the SAE reads this head of a per-head site only.
        dtype, device: of the parameters.

    Attributes:
        W_enc, b_enc, W_dec, b_dec, threshold: the parameters (``threshold`` exists for
            ``"jumprelu"`` only).
    """

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        architecture: str = "topk",
        *,
        k: int | None = None,
        d_out: int | None = None,
        apply_b_dec_to_input: bool | None = None,
        hook_name: str | None = None,
        hook_name_out: str | None = None,
        model_name: str | None = None,
        reshape_activations: str = "none",
        hook_head_index: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise MechinterpError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")
        if d_in < 1 or d_sae < 1:
            raise MechinterpError(f"d_in and d_sae must be positive, got d_in={d_in}, d_sae={d_sae}.")
        if architecture == "topk" and (k is None or not 1 <= k <= d_sae):
            raise MechinterpError(f"A TopK SAE needs 1 <= k <= d_sae ({d_sae}), got k={k}.")
        self.d_in, self.d_sae, self.architecture, self.k = d_in, d_sae, architecture, k
        self.d_out = d_out if d_out is not None else d_in
        self.is_transcoder = d_out is not None and (hook_name_out is not None or d_out != d_in)
        if apply_b_dec_to_input is None:
            apply_b_dec_to_input = not self.is_transcoder
        if apply_b_dec_to_input and self.d_out != d_in:
            raise MechinterpError("apply_b_dec_to_input needs d_out == d_in; pass apply_b_dec_to_input=False.")
        self.apply_b_dec_to_input = apply_b_dec_to_input
        self.hook_name, self.hook_name_out, self.model_name = hook_name, hook_name_out, model_name
        if reshape_activations not in ("none", "hook_z"):
            raise MechinterpError(f"reshape_activations must be 'none' or 'hook_z', got {reshape_activations!r}.")
        if reshape_activations == "hook_z" and hook_head_index is not None:
            raise MechinterpError("Pass reshape_activations='hook_z' (all heads) or hook_head_index (one head), not both.")
        if hook_head_index is not None and (isinstance(hook_head_index, bool) or not isinstance(hook_head_index, int)
                                            or hook_head_index < 0):
            raise MechinterpError(f"hook_head_index must be a head index >= 0, got {hook_head_index!r}.")
        self.reshape_activations, self.hook_head_index = reshape_activations, hook_head_index
        kw: dict[str, Any] = {"dtype": dtype, "device": device}
        w_dec = torch.randn(d_sae, self.d_out, **kw)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous() if self.d_out == d_in else torch.randn(d_in, d_sae, **kw) / d_in**0.5)
        self.b_enc = nn.Parameter(torch.zeros(d_sae, **kw))
        self.b_dec = nn.Parameter(torch.zeros(self.d_out, **kw))
        if architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(d_sae, **kw))
        self.training_log: Any = None  # set by train_sae
        #: tokens whose input norm exceeds this ("massive activations", e.g. a first-token attention sink) get no
        #: latents: :meth:`encode` returns zeros there and :func:`splice` passes them through (``None``: every token)
        self.max_input_norm: float | None = None

    # ------------------------------------------------------------------ forward
    def pre_activations(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """``(x - b_dec) @ W_enc + b_enc`` (``b_dec`` only when ``apply_b_dec_to_input``)."""
        if x.shape[-1] != self.d_in:
            raise ShapeMismatchError(
                f"The SAE reads vectors of width {self.d_in}; got shape {tuple(x.shape)}. "
                "Pass the activation of the site it was trained on."
            )
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """The sparse activation of the architecture applied to pre-activations."""
        if self.architecture == "standard":
            return torch.relu(pre)
        if self.architecture == "topk":
            values, indices = torch.topk(pre, k=int(self.k), dim=-1, sorted=False)  # type: ignore[arg-type]
            return torch.zeros_like(pre).scatter_(-1, indices, values.relu())
        return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """The latent activations of ``x`` (zero for tokens above :attr:`max_input_norm`)."""
        f = self.activate(self.pre_activations(x))
        if self.max_input_norm is not None:
            f = f * self.in_range(x)[..., None].to(f.dtype)
        return f

    def in_range(self, x: Float[Tensor, "... d_in"]) -> Tensor:
        """``[...]`` True for the tokens this SAE encodes (input norm at most :attr:`max_input_norm`)."""
        if self.max_input_norm is None:
            return torch.ones(x.shape[:-1], dtype=torch.bool, device=x.device)
        return x.float().norm(dim=-1) <= self.max_input_norm

    def decode(self, f: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        """``f @ W_dec + b_dec``."""
        return f @ self.W_dec + self.b_dec

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        """The reconstruction ``decode(encode(x))`` (error term dropped)."""
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ site <-> vectors
    @property
    def per_head(self) -> bool:
        """Whether the SAE reads a per-head site ``[..., head_index, d_head]``."""
        return self.reshape_activations == "hook_z" or self.hook_head_index is not None

    def site_vectors(self, act: Tensor) -> Tensor:
        """The SAE's input vectors ``[..., d_in]`` from a site activation (per-head sites: flattened
        heads, or the SAE's head)."""
        if self.hook_head_index is not None:
            if act.ndim < 2 or self.hook_head_index >= act.shape[-2]:
                raise ShapeMismatchError(f"The SAE reads head {self.hook_head_index} of a [..., head_index, d_head] site; "
                                         f"got shape {tuple(act.shape)}.")
            return act[..., self.hook_head_index, :]
        if self.reshape_activations == "hook_z":
            return act.flatten(-2)
        return act

    def write_site(self, act: Tensor, vectors: Tensor) -> Tensor:
        """``act`` with the SAE's part replaced by ``vectors`` (the inverse of :meth:`site_vectors`)."""
        if self.hook_head_index is not None:
            out = act.clone()
            out[..., self.hook_head_index, :] = vectors.to(act.dtype)
            return out
        if self.reshape_activations == "hook_z":
            return vectors.to(act.dtype).reshape(act.shape)
        return vectors.to(act.dtype)

    # ------------------------------------------------------------------ helpers
    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Scale each decoder row to unit norm, folding the norm into the encoder (outputs unchanged
        for ReLU and JumpReLU; TopK's choice of latents may change unless the norms are equal)."""
        norms = self.W_dec.norm(dim=-1).clamp_min(1e-12)
        self.W_dec.div_(norms[:, None])
        self.W_enc.mul_(norms[None, :])
        self.b_enc.mul_(norms)
        if self.architecture == "jumprelu":
            self.threshold.mul_(norms)

    def config(self) -> dict[str, Any]:
        """The constructor arguments (without weights), JSON-able."""
        return {
            "d_in": self.d_in, "d_sae": self.d_sae, "architecture": self.architecture, "k": self.k,
            "d_out": self.d_out if self.is_transcoder else None, "apply_b_dec_to_input": self.apply_b_dec_to_input,
            "hook_name": self.hook_name, "hook_name_out": self.hook_name_out, "model_name": self.model_name,
            "reshape_activations": self.reshape_activations, "hook_head_index": self.hook_head_index,
        }

    def extra_repr(self) -> str:
        kind = "transcoder" if self.is_transcoder else "SAE"
        k = f", k={self.k}" if self.architecture == "topk" else ""
        head = f", head={self.hook_head_index}" if self.hook_head_index is not None else (", all heads" if self.per_head else "")
        return f"{kind}: {self.architecture}{k}, d_in={self.d_in}, d_sae={self.d_sae}, hook={self.hook_name}{head}"
