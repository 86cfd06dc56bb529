"""EK-FAC against the exact Gauss–Newton / Fisher matrices of a model small enough to form them."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, jacrev

from mechinterp.errors import MechinterpError
from mechinterp.influence import EKFAC, InfluenceIndex, as_queries, as_training_set, per_example_grads, select_params
from mechinterp.influence.planted import make_data, make_model, train


@pytest.fixture(scope="module")
def small():
    data = make_data(n_subjects=4, n_planted=2, n_objects=4, copies=2)
    model = make_model(data.d_vocab, d_model=8)
    train(model, data.tokens, steps=30)
    return model, as_training_set(model, data.tokens), data


def _flat(layer, g):
    return layer.to_matrix(g).reshape(g.shape[0], -1)


def test_corrected_eigenvalues_are_the_exact_second_moments(small):
    """Empirical Fisher: Λ = diag(Qᵀ F Q) exactly, and EK-FAC is never farther from F than K-FAC."""
    model, ts, _ = small
    names = select_params(model)
    ek = EKFAC(fisher="empirical").fit(model, ts, names)
    kf = EKFAC(fisher="empirical", correct=False).fit(model, ts, names)
    grads = per_example_grads(model, names, ts.tokens, ts.loss_mask)
    for layer in ek.layers_:
        g = _flat(layer, grads[layer.param]).double()
        fisher = g.T @ g / len(ts)  # the exact block of the empirical Fisher
        q = torch.kron(ek.q_s_[layer.param], ek.q_a_[layer.param]).double()
        torch.testing.assert_close(ek.lambda_[layer.param].reshape(-1).double(), torch.diag(q.T @ fisher @ q), rtol=1e-3, atol=1e-6)
        err_ek = torch.linalg.norm(ek.dense(layer.param).double() - fisher)
        err_kf = torch.linalg.norm(kf.dense(layer.param).double() - fisher)
        assert err_ek <= err_kf * (1 + 1e-4)


def test_exact_when_the_fisher_is_a_kronecker_product(small):
    """One sequence with one prediction: F = (δδᵀ) ⊗ (aaᵀ) exactly, so EK-FAC's inverse-HVP is exact."""
    model, ts, _ = small
    one = as_training_set(model, [ts.tokens[0, :2].tolist()])
    names = ["blocks.0.mlp.W_out", "unembed.W_U"]
    ek = EKFAC(fisher="empirical", damping=1e-3).fit(model, one, names)
    g = per_example_grads(model, names, one.tokens, one.loss_mask)
    v = {n: torch.randn_like(g[n]) for n in names}
    pre = ek.precondition(v)
    for layer in ek.layers_:
        flat = _flat(layer, g[layer.param]).double()
        h = flat.T @ flat + 1e-3 * torch.eye(flat.shape[1], dtype=torch.double)
        want = torch.linalg.solve(h, _flat(layer, v[layer.param]).double()[0])
        torch.testing.assert_close(_flat(layer, pre[layer.param]).double()[0], want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def _exact_ggn(model, names, ts):
    """(1/N) Σ_n Σ_t J_ntᵀ (diag p - p pᵀ) J_nt over the chosen parameters (all of them jointly)."""
    params = {n: p.detach() for n, p in model.named_parameters() if n in names}
    size = sum(p.numel() for p in params.values())
    h = torch.zeros(size, size, dtype=torch.double)
    for i in range(len(ts)):
        toks = ts.tokens[i : i + 1, : int(ts.lengths[i])]
        jac = jacrev(lambda p: functional_call(model, p, (toks,))[0, :-1])(params)  # [pos-1, vocab, *param]
        j = torch.cat([jac[n].reshape(*jac[n].shape[:2], -1) for n in names], dim=-1).double()
        probs = model(toks)[0, :-1].softmax(-1).double().detach()
        hout = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
        h += torch.einsum("tvp,tvw,twq->pq", j, hout, j)
    return h / len(ts)


def test_ekfac_influence_tracks_the_exact_gauss_newton_inverse(small):
    """Scores with the exact GN inverse vs EK-FAC, K-FAC and the identity, at the same damping."""
    model, ts, data = small
    names = ["blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U"]
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    h = _exact_ggn(model, names, ts)
    damping = 0.1 * float(torch.diagonal(h).mean())
    grads = per_example_grads(model, names, ts.tokens, ts.loss_mask)
    g = torch.cat([grads[n].reshape(len(ts), -1) for n in names], 1).double()
    dot_index = InfluenceIndex(model, "dot", params=names, projection_dim=None).fit(ts)
    q = dot_index.query_gradients(as_queries(model, queries))
    qv = torch.cat([q[n].reshape(len(queries), -1) for n in names], 1).double()
    exact = -(torch.linalg.solve(h + damping * torch.eye(len(h), dtype=torch.double), qv.T).T @ g.T)

    def corr(method):
        s = InfluenceIndex(model, method, params=names, projection_dim=None, damping=damping, n_samples=8).fit(ts).score(queries, per_token=False).scores
        return float(torch.corrcoef(torch.stack([s.flatten().double(), exact.flatten()]))[0, 1])

    dot = dot_index.score(queries, per_token=False).scores
    c_dot = float(torch.corrcoef(torch.stack([dot.flatten().double(), exact.flatten()]))[0, 1])
    c_ek, c_kf = corr("ekfac"), corr("kfac")
    print(f"correlation with exact GN influence: ekfac {c_ek:.3f} kfac {c_kf:.3f} dot {c_dot:.3f}")
    assert c_ek > 0.95 and c_ek > c_dot  # measured (n_samples=8): ekfac 0.984, kfac 0.982, dot 0.920


def test_bad_arguments_raise(small):
    model, ts, _ = small
    with pytest.raises(MechinterpError, match="fisher"):
        EKFAC(fisher="true")
    with pytest.raises(MechinterpError, match="damping"):
        EKFAC(damping=-1.0)
    with pytest.raises(MechinterpError, match="not fitted"):
        EKFAC().precondition({})
