"""Latent dashboards: examples, density and histogram equal a brute-force scan of the latents; the page is
offline (no external reference) and renders in headless Chromium with the network off (the helper of
tests/attention/test_render.py; skipped without /usr/bin/chromium)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

import mechinterp
from mechinterp.attention import external_references
from mechinterp.core.hooks import assert_no_hooks
from mechinterp.dictionary import LatentDashboard, latent_dashboard
from mechinterp.errors import MechinterpError

from .conftest import make_sae

HOOK = "blocks.0.hook_resid_post"
PROMPTS = [" ".join(f"w{(3 * i + j) % 45}" for j in range(4 + i % 5)) for i in range(12)]


def _render_helpers():
    """``_chromium``, ``_page_requests`` and ``needs_chromium`` from the attention render test (one helper, not two)."""
    path = Path(__file__).resolve().parents[1] / "attention" / "test_render.py"
    spec = importlib.util.spec_from_file_location("_attention_render_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RENDER = _render_helpers()


@pytest.fixture
def dashboard(tiny_model):
    sae = make_sae(tiny_model, HOOK)
    cache = mechinterp.SharedCache(tiny_model, PROMPTS, positions="all", progress=False)
    with torch.no_grad():
        f = sae.encode(cache[HOOK])  # [n, pos, d_sae]
    mask = cache.attention_mask.bool().clone()
    mask[:, 0] &= not tiny_model.cfg.default_prepend_bos  # the dashboard leaves BOS out, as max_activating_examples does
    fired = (f[mask] > 0).sum(0)
    latents = [int(i) for i in fired.argsort(descending=True)[:3]]
    return sae, cache, f, mask, latents, latent_dashboard(tiny_model, sae, cache, latents, k=4, n_logits=5, bins=8)


def test_examples_and_statistics_equal_a_brute_force_scan(tiny_model, dashboard):
    sae, cache, f, mask, latents, dash = dashboard
    assert isinstance(dash, LatentDashboard) and dash.latents == latents
    for j, i in enumerate(latents):
        real = f[..., i].masked_fill(~mask, -float("inf")).flatten()
        assert torch.allclose(dash.examples[j].values, real.topk(4).values, atol=1e-5)
        vals = f[..., i][mask]
        assert float(dash.density[j]) == pytest.approx(float((vals > 0).float().mean()))
        assert float(dash.max_activation[j]) == pytest.approx(float(vals.max()), abs=1e-5)
        assert int(dash.hist_counts[j].sum()) == int((vals > 0).sum())
    assert dash.n_tokens == int(mask.sum())
    assert dash.logit_effects is not None and dash.logit_effects.latents == latents
    assert_no_hooks(tiny_model)


def test_page_is_offline_and_round_trips(tiny_model, dashboard, tmp_path):
    *_, latents, dash = dashboard
    page = dash.to_page()
    assert external_references(page) == [] and "<script" not in page
    assert page.count("class='latent-card'") == 3 and page.count("<svg class='hist'") == 3
    back = LatentDashboard.load(dash.save(tmp_path / "dash.json"))
    assert back.latents == latents and torch.equal(back.density, dash.density)
    assert back.examples[0].tokens == dash.examples[0].tokens and back.logit_effects.top_tokens == dash.logit_effects.top_tokens


def test_prompts_give_the_same_dashboard_as_a_cache(tiny_model, dashboard):
    sae, *_, latents, dash = dashboard
    again = latent_dashboard(tiny_model, sae, PROMPTS, latents, k=4, n_logits=5, bins=8)
    assert torch.equal(again.density, dash.density) and torch.allclose(again.examples[1].values, dash.examples[1].values)


def test_bad_inputs(tiny_model):
    sae = make_sae(tiny_model, HOOK)
    with pytest.raises(MechinterpError, match="latents"):
        latent_dashboard(tiny_model, sae, PROMPTS, [100])
    with pytest.raises(MechinterpError, match="k"):
        latent_dashboard(tiny_model, sae, PROMPTS, [1], k=0)
    with pytest.raises(MechinterpError, match="positions='all'"):
        latent_dashboard(tiny_model, sae, mechinterp.SharedCache(tiny_model, PROMPTS, positions="last", progress=False), [1])
    assert_no_hooks(tiny_model)


@RENDER.needs_chromium
def test_dashboard_renders_offline_in_chromium(dashboard, tmp_path):
    *_, latents, dash = dashboard
    path = dash.save(tmp_path / "latents.html")
    shot = tmp_path / "shot.png"
    run = RENDER._chromium(Path(path).as_uri(), tmp_path / "c", "--dump-dom", f"--screenshot={shot}", "--window-size=1000,1400")
    dom = run.stdout
    assert len(re.findall(r'<section class="latent-card" id="latent-\d+"', dom)) == 3, dom[:1500]
    assert all(f'id="latent-{i}"' in dom for i in latents)
    assert dom.count('<svg class="hist"') == 3 and dom.count('class="tok"') >= 3 * 4
    assert RENDER._page_requests(tmp_path / "c" / "net.json") == []

    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.01
