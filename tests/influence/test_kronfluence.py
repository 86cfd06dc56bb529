"""EK-FAC against kronfluence (Grosse et al. 2023's library) on the same model, data and queries.

kronfluence factors only ``nn.Linear``/``nn.Conv2d`` modules, and TransformerLens computes its
weight matrices with einsums over parameters (``W_Q [head, d_model, d_head]`` ...). So the test
builds :class:`LinearTwin`, an ``nn.Module`` with one bias-free ``nn.Linear`` per matrix that
our EK-FAC tracks (``W_Q``/``W_K``/``W_V`` as ``[head*d_head, d_model]``, ``W_O``, ``W_in``,
``W_out``, ``W_U``), holding exactly the TL model's weights (laid out as
:meth:`~mechinterp.influence.layers.KroneckerLayer.to_matrix` lays out gradients) and the
biases and LayerNorm scales as plain parameters. Its logits equal the TL model's (checked), so
both libraries see the same activations and gradients; kronfluence then factors the twin and
ours factors the TL model.

Conventions that must be matched, each one a real difference between the two libraries:

* **Fisher labels.** kronfluence samples labels inside the user's ``compute_train_loss``; ours
  draws them with its own generator. Different random draws give different factors, equal
  only in expectation, so the test uses the empirical Fisher on both sides
  (``fisher="empirical"`` / ``use_empirical_fisher=True``).
* **Which tokens count in the covariances.** Ours averages ``A = E[a aᵀ]`` and ``S = E[δ δᵀ]``
  over the tokens that predict something (not padding, not each sequence's last token, whose
  gradient is zero). kronfluence counts every token its ``get_attention_mask`` marks; with an
  ordinary attention mask that includes the last token, which changes ``A`` (and the count
  dividing ``S``) and so the eigenbasis. The test's task returns the loss mask (position ``t``
  counts when it predicts token ``t+1``), which is kronfluence's documented hook for this. With
  the ordinary attention mask (last token counted) the scores differ by up to 8% of the
  largest score on this model.
* **Damping.** kronfluence's default ``damping_factor`` is 1e-8; ``None`` is 0.1 × the mean of
  ``Λ`` per module, which is our default. Both are compared.
* **Sign.** kronfluence's score is ``∇fᵀ H⁻¹ ∇L_n`` for the measurement ``f``; ours is
  ``-∇mᵀ H⁻¹ ∇L_n`` for ``m`` = the target's log-probability (positive = helpful). With
  ``f = -m`` (the query's loss) the two are the same number.
* **K-FAC scale.** kronfluence's K-FAC eigenvalues are ``λ_S λ_A`` of per-token means; ours
  multiply by the mean tokens per sequence so that K-FAC and EK-FAC model the same per-sequence
  Fisher. With heuristic damping (relative to the eigenvalues) K-FAC scores therefore differ by
  exactly that factor; the test checks it.

Tolerance: ours keeps eigenvectors and gradients in float32 (kronfluence was set to float64
for its covariances, eigendecompositions and ``Λ``), so the test allows 1e-5 of the largest entry for
the covariances, eigenvalues and scores and 1e-4 for ``Λ`` (measured: scores agree to 5e-7 of
the largest score, with and without heuristic damping). A wrong layout, count, damping, Fisher
or sign gives errors of order 1: our default sampled Fisher against kronfluence's empirical one
is off by 30-40% of the largest score (correlation 0.95-0.97).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mechinterp.influence import EKFAC, InfluenceIndex, as_training_set, select_params
from mechinterp.influence.planted import make_data, make_model, train

kron = pytest.importorskip("kronfluence")
from kronfluence.analyzer import Analyzer, prepare_model  # noqa: E402
from kronfluence.arguments import FactorArguments, ScoreArguments  # noqa: E402
from kronfluence.task import Task  # noqa: E402

F64 = torch.float64


class LinearTwin(nn.Module):
    """The TL model (LayerNorm, causal attention, GELU MLP) with ``nn.Linear`` weight matrices."""

    def __init__(self, tl) -> None:
        super().__init__()
        cfg = tl.cfg
        self.cfg, self.eps = cfg, cfg.eps
        p = {k: v.detach().clone() for k, v in tl.state_dict().items()}
        self.W_E, self.W_pos = nn.Parameter(p["embed.W_E"]), nn.Parameter(p["pos_embed.W_pos"])
        self.lin = nn.ModuleDict()
        self.vec = nn.ParameterDict()

        def linear(name: str, weight: torch.Tensor) -> None:  # weight: [d_out, d_in]
            layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            layer.weight.data.copy_(weight)
            self.lin[name.replace(".", "_")] = layer

        for l in range(cfg.n_layers):
            b = f"blocks.{l}."
            for w in "QKV":
                W = p[b + f"attn.W_{w}"]  # [h, d_model, e] -> [h*e, d_model]
                linear(b + f"attn.W_{w}", W.transpose(1, 2).reshape(-1, W.shape[1]))
            W_O = p[b + "attn.W_O"]  # [h, e, d_model] -> [d_model, h*e]
            linear(b + "attn.W_O", W_O.reshape(-1, W_O.shape[-1]).T)
            linear(b + "mlp.W_in", p[b + "mlp.W_in"].T)
            linear(b + "mlp.W_out", p[b + "mlp.W_out"].T)
        linear("unembed.W_U", p["unembed.W_U"].T)
        for k, v in p.items():
            if k.split(".")[-1] in ("w", "b", "b_Q", "b_K", "b_V", "b_O", "b_in", "b_out", "b_U"):
                self.vec[k.replace(".", "_")] = nn.Parameter(v)

    def _ln(self, x: torch.Tensor, name: str) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        x = x / (x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt()
        return x * self.vec[name + "_w"] + self.vec[name + "_b"]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg, L, V = self.cfg, self.lin, self.vec
        n, p = tokens.shape
        h, e = cfg.n_heads, cfg.d_head
        x = self.W_E[tokens] + self.W_pos[:p]
        causal = torch.ones(p, p, dtype=torch.bool).tril()
        for l in range(cfg.n_layers):
            b = f"blocks_{l}_"
            y = self._ln(x, b + "ln1")
            q = (L[b + "attn_W_Q"](y).reshape(n, p, h, e) + V[b + "attn_b_Q"]).transpose(1, 2)
            k = (L[b + "attn_W_K"](y).reshape(n, p, h, e) + V[b + "attn_b_K"]).transpose(1, 2)
            v = (L[b + "attn_W_V"](y).reshape(n, p, h, e) + V[b + "attn_b_V"]).transpose(1, 2)
            scores = (q @ k.transpose(-1, -2) / math.sqrt(e)).masked_fill(~causal, float("-inf"))
            z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, p, h * e)
            x = x + L[b + "attn_W_O"](z) + V[b + "attn_b_O"]
            y = self._ln(x, b + "ln2")
            post = nn.functional.gelu(L[b + "mlp_W_in"](y) + V[b + "mlp_b_in"])
            x = x + L[b + "mlp_W_out"](post) + V[b + "mlp_b_out"]
        return L["unembed_W_U"](self._ln(x, "ln_final")) + V["unembed_b_U"]


class Batches(torch.utils.data.Dataset):
    """Training rows ``{"tokens", "lengths"}`` or queries ``{"tokens", "target"}`` for kronfluence."""

    def __init__(self, tokens: torch.Tensor, **other: torch.Tensor) -> None:
        self.tokens, self.other = tokens, other

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int):
        return {"tokens": self.tokens[i], **{k: v[i] for k, v in self.other.items()}}


def _loss_mask(tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[n, pos]``: 1 where position ``t`` predicts a real token ``t+1``."""
    return (torch.arange(tokens.shape[1])[None] < (lengths[:, None] - 1)).to(torch.float32)


class NextTokenTask(Task):
    """Summed next-token loss per sequence; the query's measurement is its target's loss."""

    def compute_train_loss(self, batch, model, sample=False):
        assert not sample  # the empirical Fisher (use_empirical_fisher=True)
        tokens = batch["tokens"]
        logp = model(tokens)[:, :-1].log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
        return -(logp * _loss_mask(tokens, batch["lengths"])[:, :-1]).sum()

    def compute_measurement(self, batch, model):
        logits = model(batch["tokens"])[:, -1]
        return -logits.log_softmax(-1).gather(-1, batch["target"][:, None]).sum()

    def get_attention_mask(self, batch):
        if "lengths" not in batch:
            return None  # a query: every position counts
        return _loss_mask(batch["tokens"], batch["lengths"]).long()

    def get_influence_tracked_modules(self):
        return None


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import kronfluence.utils.state as kron_state

    mp = pytest.MonkeyPatch()  # kronfluence runs gc.collect() after every stage: ~1 s each beside TL's heap
    mp.setattr(kron_state, "gc", type("NoGC", (), {"collect": staticmethod(lambda: 0)}))
    data = make_data(n_subjects=6, n_planted=3, n_objects=5, copies=2)
    tl = make_model(data.d_vocab, d_model=16)
    train(tl, data.tokens, steps=20)
    tl.requires_grad_(True)
    rows = [r[: 3 + (i % 3)] if i % 4 == 0 else r for i, r in enumerate(data.tokens.tolist())]  # some padded rows
    ts = as_training_set(tl, rows)
    twin = LinearTwin(tl)
    with torch.no_grad():
        torch.testing.assert_close(twin(ts.tokens), tl(ts.tokens), rtol=1e-5, atol=1e-5)
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    task = NextTokenTask()
    analyzer = Analyzer("twin", prepare_model(twin, task), task, cpu=True, disable_tqdm=True, output_dir=str(tmp_path_factory.mktemp("kron")))
    f64 = dict(activation_covariance_dtype=F64, gradient_covariance_dtype=F64, eigendecomposition_dtype=F64, lambda_dtype=F64,
               per_sample_gradient_dtype=F64)
    train_ds = Batches(ts.tokens, lengths=ts.lengths)
    for strategy in ("ekfac", "kfac"):
        analyzer.fit_all_factors(strategy, train_ds, per_device_batch_size=8, overwrite_output_dir=True,
                                 factor_args=FactorArguments(strategy=strategy, use_empirical_fisher=True, **f64))
    query_ds = Batches(torch.stack([p for p, _ in queries]), target=torch.tensor([t for _, t in queries]))
    scores = {}
    for strategy, damping in (("ekfac", None), ("ekfac", 1e-3), ("kfac", None)):
        name = f"{strategy}_{damping}"
        analyzer.compute_pairwise_scores(name, strategy, query_ds, train_ds, per_device_query_batch_size=len(queries),
                                         per_device_train_batch_size=8, overwrite_output_dir=True,
                                         score_args=ScoreArguments(damping_factor=damping, score_dtype=F64, precondition_dtype=F64,
                                                                   per_sample_gradient_dtype=F64))
        scores[name] = analyzer.load_pairwise_scores(name)["all_modules"]
    mp.undo()
    return tl, ts, queries, analyzer, scores


def _module(param: str) -> str:
    return "lin." + param.replace(".", "_")


def test_factors_equal_kronfluences(setup):
    """Covariances, their eigenvalues, eigenvectors (up to sign) and the corrected eigenvalues Λ."""
    tl, ts, _, analyzer, _ = setup
    names = select_params(tl)
    ours = EKFAC(fisher="empirical").fit(tl, ts, names)
    cov = analyzer.load_covariance_matrices("ekfac")
    eig = analyzer.load_eigendecomposition("ekfac")
    lam = analyzer.load_lambda_matrices("ekfac")
    assert len(names) == 7 and set(cov["activation_covariance"]) == {_module(n) for n in names}
    for n in names:
        m = _module(n)
        qa, qs = ours.q_a_[n].double(), ours.q_s_[n].double()
        a_ours = qa @ torch.diag(ours.eig_a_[n].double()) @ qa.T
        s_ours = qs @ torch.diag(ours.eig_s_[n].double()) @ qs.T
        a_kron = cov["activation_covariance"][m] / float(cov["num_activation_covariance_processed"][m])
        s_kron = cov["gradient_covariance"][m] / float(cov["num_gradient_covariance_processed"][m])
        scale = lambda t: float(t.abs().max())  # noqa: E731
        torch.testing.assert_close(a_ours, a_kron, rtol=0, atol=1e-5 * scale(a_kron))
        torch.testing.assert_close(s_ours, s_kron, rtol=0, atol=1e-5 * scale(s_kron))
        for q, ev, kq, kev in ((qa, ours.eig_a_[n], eig["activation_eigenvectors"][m], eig["activation_eigenvalues"][m]),
                               (qs, ours.eig_s_[n], eig["gradient_eigenvectors"][m], eig["gradient_eigenvalues"][m])):
            torch.testing.assert_close(ev.double(), kev.clamp_min(0), rtol=0, atol=1e-5 * scale(kev))
            gaps = torch.diff(kev).abs()
            clear = torch.ones(len(kev), dtype=torch.bool)  # eigenvectors are defined (up to sign) where the eigenvalue is isolated
            clear[1:] &= gaps > 1e-3 * scale(kev)
            clear[:-1] &= gaps > 1e-3 * scale(kev)
            overlap = (q.T @ kq).diag().abs()[clear]
            assert clear.sum() >= 4 and float(overlap.min()) > 1 - 1e-4, (n, overlap.min())
        torch.testing.assert_close(ours.lambda_[n].double(), lam["lambda_matrix"][m] / float(lam["num_lambda_processed"][m]),
                                   rtol=0, atol=1e-4 * scale(ours.lambda_[n]))


@pytest.mark.parametrize("damping", [None, 1e-3])
def test_ekfac_scores_equal_kronfluences(setup, damping):
    tl, ts, queries, _, scores = setup
    index = InfluenceIndex(tl, "ekfac", projection_dim=None, fisher="empirical", damping=damping).fit(ts)
    ours, _ = index.raw_scores(queries)
    theirs = scores[f"ekfac_{damping}"]
    assert ours.shape == theirs.shape == (len(queries), len(ts))
    torch.testing.assert_close(ours.double(), theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
    assert torch.equal(ours.argsort(1, descending=True)[:, :3], theirs.argsort(1, descending=True)[:, :3])


def test_kfac_scores_differ_by_tokens_per_sequence(setup):
    """Ours models the per-sequence Fisher (λ_S λ_A × tokens per sequence); kronfluence's K-FAC the per-token one."""
    tl, ts, queries, _, scores = setup
    ours, _ = InfluenceIndex(tl, "kfac", projection_dim=None, fisher="empirical").fit(ts).raw_scores(queries)
    per_seq = float((ts.lengths - 1).sum()) / len(ts)
    theirs = scores["kfac_None"] / per_seq
    torch.testing.assert_close(ours.double(), theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
