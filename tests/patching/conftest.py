"""Fixtures of the patching tests: small random models and aligned clean/corrupted batches."""

from __future__ import annotations

import pytest
import torch


def make_model(*, attn_only: bool = False, norm: str | None = "LN", n_layers: int = 2, seed: int = 1):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=32, n_heads=4, d_head=8, d_mlp=None if attn_only else 64, attn_only=attn_only,
        n_ctx=16, d_vocab=48, act_fn="gelu", normalization_type=norm, seed=seed, device="cpu",
    )
    torch.manual_seed(seed)
    model = HookedTransformer(cfg)
    model.eval()
    return model


def make_llama(ungroup: bool = False, seed: int = 5):
    """A 3-layer random Llama-shaped model (rotary, RMSNorm, gated SiLU MLP): 4 query heads sharing 2 key/value heads."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=3, d_model=32, n_heads=4, n_key_value_heads=2, d_head=8, d_mlp=48, n_ctx=16, d_vocab=48,
        act_fn="silu", gated_mlp=True, normalization_type="RMS", final_rms=True, positional_embedding_type="rotary",
        rotary_dim=8, ungroup_grouped_query_attention=ungroup, seed=seed, device="cpu",
    )
    torch.manual_seed(seed)
    model = HookedTransformer(cfg).eval()
    for p in model.parameters():  # random weights large enough that every patch moves the metric
        p.data.add_(0.3 * torch.randn_like(p))
    return model


@pytest.fixture(scope="session")
def attn_only_model():
    """A 2-layer attention-only random model with LayerNorm."""
    return make_model(attn_only=True)


@pytest.fixture(scope="session")
def linear_model():
    """A 2-layer attention-only random model without LayerNorm: logits are linear in the last attn_out."""
    return make_model(attn_only=True, norm=None)


@pytest.fixture(scope="session")
def pair():
    """(clean, corrupted, correct, wrong) token tensors: 3 prompts of 10 tokens (ids 3..47)."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(3, 48, (3, 10), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2:5] = torch.randint(3, 48, (3, 3), generator=gen)
    return clean, corrupted, torch.tensor([4, 5, 6]), torch.tensor([7, 8, 9])


@pytest.fixture(scope="session")
def short_pair():
    """Like ``pair`` but 2 prompts of 6 tokens: TL's loops over every index stay short."""
    gen = torch.Generator().manual_seed(1)
    clean = torch.randint(3, 48, (2, 6), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2:4] = torch.randint(3, 48, (2, 2), generator=gen)
    return clean, corrupted, torch.tensor([4, 5]), torch.tensor([7, 8])


@pytest.fixture(scope="session")
def short_metric(short_pair):
    """Logit difference at the last position for ``short_pair``."""
    _, _, correct, wrong = short_pair
    return lambda logits: logits[torch.arange(2), -1, correct] - logits[torch.arange(2), -1, wrong]


@pytest.fixture(scope="session")
def metric(pair):
    """Logit difference at the last position, per prompt."""
    _, _, correct, wrong = pair

    def logit_diff(logits):
        rows = torch.arange(logits.shape[0])
        return logits[rows, -1, correct] - logits[rows, -1, wrong]

    return logit_diff


@pytest.fixture(scope="session")
def model_factory():
    """``make_model`` itself, for tests that need a differently configured model."""
    return make_model


@pytest.fixture(scope="session")
def llama_factory():
    """``make_llama`` itself: grouped-query, rotary, RMSNorm, gated-MLP models."""
    return make_llama


# --- the independent reference of the patching engine ------------------------------------
def naive_reference(model, base, variants, metric):
    """``[n_variants, batch]``: each variant in its own full forward pass from the base tokens, with plain
    TransformerLens hooks written here (not the engine's hooks, planning or stacking)."""
    flags = {"hook_result": "use_attn_result", "_input": "use_split_qkv_input", "hook_attn_in": "use_attn_in",
             "hook_mlp_in": "use_hook_mlp_in"}
    out = []
    for variant in variants:
        hooks = list(base.fwd_hooks)
        for patch in variant:
            def write(act, hook, patch=patch):
                mask = patch.mask.to(act.device)  # [pos, ...] without the batch dim: broadcasts over prompts
                value = patch.value.to(act.device, act.dtype)  # [batch or 1, ...]
                new = {"replace": value, "add": act + value, "scale": act * value}[patch.mode]
                return torch.where(mask, new, act)

            hooks.append((patch.hook, write))
        names = {patch.hook for patch in variant}
        wanted = {field for suffix, field in flags.items() if any(n.endswith(suffix) for n in names)}
        saved = {field: getattr(model.cfg, field) for field in wanted}
        try:
            for field in wanted:
                setattr(model.cfg, field, True)
            with torch.no_grad(), model.hooks(fwd_hooks=hooks):  # removes only these hooks, not a user's
                logits = model(base.tokens)
        finally:
            for field, value in saved.items():
                setattr(model.cfg, field, value)
        out.append(metric(logits).float().cpu())
    return torch.stack(out)


@pytest.fixture
def reference():
    """The independent one-run-per-variant reference (:func:`naive_reference`)."""
    return naive_reference
