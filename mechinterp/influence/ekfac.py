"""EK-FAC: a Kronecker-factored, eigenvalue-corrected Gauss–Newton Hessian, and its inverse.

For a weight matrix ``W`` (``y = W a``), K-FAC approximates the layer's block of the
Gauss–Newton (Fisher) matrix by ``S ⊗ A``, with ``A = E[a aᵀ]`` (input activations) and
``S = E[δ δᵀ]`` (output gradients with labels *sampled from the model*, whose expected
outer product is the Gauss–Newton matrix of the cross-entropy loss). EK-FAC (George et al.
2018; Grosse et al. 2023) keeps the eigenbases ``Q_A``, ``Q_S`` of the two factors and
replaces the eigenvalues by the exact second moments of the per-sequence gradients in that
basis: ``Λ = E_n[(Q_Sᵀ G_n Q_A)²]``. Of all matrices ``(Q_S ⊗ Q_A) diag(λ) (Q_S ⊗ Q_A)ᵀ``
this is the one closest to the true block in Frobenius norm (so never farther than
K-FAC), and its damped inverse is cheap:

    H⁻¹ v = Q_S [(Q_Sᵀ V Q_A) / (Λ + λ)] Q_Aᵀ.

The Hessian is that of the mean per-sequence training loss (summed next-token loss), as in
kronfluence. ``fisher="empirical"`` uses the training labels instead of sampled ones (the
empirical Fisher: deterministic, used by the closed-form tests). ``damping=None`` uses
kronfluence's heuristic, 0.1 × the mean of ``Λ`` in each layer.

With the empirical Fisher the factors, ``Λ`` and scores equal kronfluence's on an
``nn.Linear`` twin of a TL model (``tests/influence/test_kronfluence.py``, 5e-7 of the largest
score). Two conventions differ from kronfluence's defaults: ``A`` and ``S`` average only over
tokens that predict something (kronfluence counts what its task's attention mask marks, which
usually includes each sequence's last token), and K-FAC's eigenvalues are scaled by the mean
tokens per sequence (the per-sequence Fisher, as ``Λ``), not left per-token.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.precision import synced_dtype
from mechinterp.errors import MechinterpError
from mechinterp.influence.data import TrainingSet
from mechinterp.influence.layers import KroneckerLayer, kronecker_layers

__all__ = ["EKFAC", "capture"]

Fisher = Literal["sampled", "empirical"]


def capture(
    model: Any, layers: Sequence[KroneckerLayer], tokens: Tensor, lengths: Tensor, labels: Tensor | None, generator: torch.Generator | None = None
) -> dict[str, tuple[Tensor, Tensor]]:
    """Inputs ``a`` and output gradients ``δ`` of every layer for one batch.

    ``labels`` ``[batch, pos-1]`` are the next tokens of the loss (``None``: sample each from
    the model's own prediction). The loss is the summed next-token loss of every sequence.
    Returns ``{param: (a [batch, pos, d_in], δ [batch, pos, d_out])}`` with ``a`` zeroed at
    padding and at each sequence's last token (it predicts nothing, so its ``δ`` is 0 and it
    adds nothing to the gradient; counting it in ``A`` would only blur the factor). Hooks are removed on return and on error.
    """
    dev = next(model.parameters()).device
    tokens = tokens.to(dev)
    ins: dict[str, Tensor] = {}
    outs: dict[str, Tensor] = {}

    def keep_in(act: Tensor, hook: Any) -> None:  # act: [batch, pos, *in]
        ins[hook.name] = act.detach()

    def keep_out(act: Tensor, hook: Any) -> Tensor:  # act: [batch, pos, *out], kept in the graph
        outs[hook.name] = act
        return act

    fwd = [(n, keep_in) for n in dict.fromkeys(l.in_hook for l in layers)]
    fwd += [(n, keep_out) for n in dict.fromkeys(l.out_hook for l in layers) if n != "logits"]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd):
        logits = model(tokens)  # [batch, pos, d_vocab]
        if not logits.requires_grad:
            raise MechinterpError("The model's parameters do not require grad; call model.requires_grad_(True) first.")
        pos = torch.arange(tokens.shape[1] - 1, device=dev)
        mask = (pos[None] < (lengths.to(dev)[:, None] - 1)).float()
        if labels is None:
            probs = logits[:, :-1].detach().float().softmax(-1)
            labels = torch.multinomial(probs.reshape(-1, probs.shape[-1]).cpu(), 1, generator=generator).reshape(mask.shape).to(dev)
        logp = logits[:, :-1].log_softmax(-1).gather(-1, labels[..., None].to(dev))[..., 0]
        loss = -(logp * mask).sum()
        names = list(outs)
        grads = torch.autograd.grad(loss, [outs[n] for n in names] + [logits])
    deltas = dict(zip(names, grads[:-1]))
    deltas["logits"] = grads[-1]
    valid = (torch.arange(tokens.shape[1], device=dev)[None] < lengths.to(dev)[:, None] - 1).float()[..., None]
    b, p = tokens.shape
    return {l.param: (l.inputs(model, ins[l.in_hook]).reshape(b, p, -1) * valid, deltas[l.out_hook].reshape(b, p, -1)) for l in layers}


def _batches(train: TrainingSet, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(train), batch_size):
        toks, lens = train.tokens[start : start + batch_size], train.lengths[start : start + batch_size]
        yield toks[:, : int(lens.max())], lens


class EKFAC:
    """Eigenvalue-corrected Kronecker factors of the Gauss–Newton Hessian, per weight matrix.

    Args:
        damping: added to every eigenvalue before inverting; ``None`` = 0.1 × mean eigenvalue
            of each layer (kronfluence's default).
        fisher: ``"sampled"`` (labels drawn from the model: the Gauss–Newton matrix, the
            default) or ``"empirical"`` (the training labels).
        n_samples: label draws per sequence for ``"sampled"``.
        correct: ``True`` for EK-FAC; ``False`` for plain K-FAC (eigenvalues ``λ_S λ_A``).
        batch_size: sequences per forward/backward pass.
        seed: seeds the label sampling.

    Attributes (after :meth:`fit`):
        layers_: the modelled :class:`KroneckerLayer` s.
        q_a_, q_s_: eigenvectors of ``A`` and ``S`` per parameter.
        lambda_: ``[d_out, d_in]`` eigenvalues in the Kronecker eigenbasis per parameter.
        damping_: the damping used per parameter.

    Example:
        >>> from mechinterp.influence.data import as_training_set
        >>> model = mechinterp.load("zoo:attn-only-2l")  # doctest: +SKIP
        >>> ek = EKFAC().fit(model, as_training_set(model, ["t1 t2 t3"]), ["blocks.0.attn.W_O"])  # doctest: +SKIP
    """

    def __init__(
        self, damping: float | None = None, fisher: Fisher = "sampled", n_samples: int = 1, correct: bool = True,
        batch_size: int = 8, seed: int = 0,
    ) -> None:
        if fisher not in ("sampled", "empirical"):
            raise MechinterpError(f"fisher must be 'sampled' or 'empirical', got {fisher!r}.")
        if damping is not None and not (isinstance(damping, (int, float)) and damping >= 0):
            raise MechinterpError(f"damping must be a non-negative number or None (heuristic), got {damping!r}.")
        if not isinstance(n_samples, int) or n_samples < 1:
            raise MechinterpError(f"n_samples must be a positive integer, got {n_samples!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise MechinterpError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.damping, self.fisher, self.n_samples, self.correct = damping, fisher, n_samples, correct
        self.batch_size, self.seed = batch_size, seed

    def _passes(self, model: Any, train: TrainingSet) -> Iterator[dict[str, tuple[Tensor, Tensor]]]:
        gen = torch.Generator().manual_seed(self.seed)
        draws = 1 if self.fisher == "empirical" else self.n_samples
        for _ in range(draws):
            for toks, lens in _batches(train, self.batch_size):
                labels = toks[:, 1:] if self.fisher == "empirical" else None
                yield capture(model, self.layers_, toks, lens, labels, gen)

    def fit(self, model: Any, train: TrainingSet, names: Sequence[str]) -> EKFAC:
        """Estimate the factors (one pass) and, for EK-FAC, the corrected eigenvalues (a second)."""
        with synced_dtype(model):
            return self._fit(model, train, names)

    def _fit(self, model: Any, train: TrainingSet, names: Sequence[str]) -> EKFAC:
        self.layers_ = kronecker_layers(model, list(names))
        self.shapes_ = {n: tuple(p.shape) for n, p in model.named_parameters() if n in set(names)}
        a_cov: dict[str, Tensor] = {}
        s_cov: dict[str, Tensor] = {}
        draws = 1 if self.fisher == "empirical" else self.n_samples
        for acts in self._passes(model, train):
            for name, (a, d) in acts.items():
                a2, d2 = a.reshape(-1, a.shape[-1]).double(), d.reshape(-1, d.shape[-1]).double()
                a_cov[name] = a_cov.get(name, 0) + a2.T @ a2
                s_cov[name] = s_cov.get(name, 0) + d2.T @ d2
        n_tok = float((train.lengths - 1).sum()) * draws
        self.n_tokens_, self.n_seq_ = n_tok / draws, len(train)
        self.q_a_, self.q_s_, self.eig_a_, self.eig_s_ = {}, {}, {}, {}
        for name in a_cov:
            ea, qa = torch.linalg.eigh(a_cov[name] / n_tok)
            es, qs = torch.linalg.eigh(s_cov[name] / n_tok)
            self.q_a_[name], self.q_s_[name] = qa.float(), qs.float()
            self.eig_a_[name], self.eig_s_[name] = ea.clamp_min(0).float(), es.clamp_min(0).float()
        if self.correct:
            lam: dict[str, Tensor] = {}
            for acts in self._passes(model, train):
                for name, (a, d) in acts.items():
                    g = torch.einsum("bpo,bpi->boi", d.float(), a.float())  # per-sequence gradient
                    rot = self.q_s_[name].T.to(g.device) @ g @ self.q_a_[name].to(g.device)
                    lam[name] = lam.get(name, 0) + (rot.double() ** 2).sum(0).cpu()
            self.lambda_ = {n: (v / (len(train) * draws)).float() for n, v in lam.items()}
        else:
            tokens_per_seq = self.n_tokens_ / self.n_seq_
            self.lambda_ = {n: tokens_per_seq * self.eig_s_[n][:, None] * self.eig_a_[n][None, :] for n in self.q_a_}
        self.damping_ = {
            n: float(self.damping) if self.damping is not None else 0.1 * float(v.mean()) for n, v in self.lambda_.items()
        }
        return self

    def _check(self) -> None:
        if not hasattr(self, "lambda_"):
            raise MechinterpError("This EKFAC is not fitted yet: call .fit(model, train, names) first.")

    def precondition(self, grads: Mapping[str, Float[Tensor, "q ..."]]) -> dict[str, Tensor]:
        """``(H + λI)⁻¹ g`` for a batch of gradients ``{name: [q, *param.shape]}`` (layer by layer)."""
        self._check()
        out = {}
        for layer in self.layers_:
            g = grads[layer.param]
            qa, qs = self.q_a_[layer.param].to(g.device), self.q_s_[layer.param].to(g.device)
            m = layer.to_matrix(g.float())
            rot = qs.T @ m @ qa
            rot = rot / (self.lambda_[layer.param].to(g.device) + self.damping_[layer.param])
            out[layer.param] = layer.from_matrix(qs @ rot @ qa.T, self.shapes_[layer.param])
        return out

    def whiten(self, grads: Mapping[str, Float[Tensor, "q ..."]]) -> dict[str, Tensor]:
        """``(H + λI)^(-1/2) g`` in the Kronecker eigenbasis: ``{name: [q, d_out, d_in]}``.

        Since the basis is orthonormal, ``<whiten(q), whiten(g)> = qᵀ (H + λI)⁻¹ g``: the
        influence score splits symmetrically, so training vectors can be stored (and randomly
        projected) once, with the noise of high-curvature directions already scaled down.
        """
        self._check()
        out = {}
        for layer in self.layers_:
            g = grads[layer.param]
            qa, qs = self.q_a_[layer.param].to(g.device), self.q_s_[layer.param].to(g.device)
            rot = qs.T @ layer.to_matrix(g.float()) @ qa
            out[layer.param] = rot * (self.lambda_[layer.param].to(g.device) + self.damping_[layer.param]).rsqrt()
        return out

    def dense(self, name: str) -> Float[Tensor, "n n"]:
        """The undamped approximate block of ``name`` as a dense matrix over ``vec([d_out, d_in])``
        (row-major), for checks on small layers."""
        self._check()
        q = torch.kron(self.q_s_[name], self.q_a_[name])
        return q @ torch.diag(self.lambda_[name].reshape(-1)) @ q.T
