"""Check: our AttnLRP / CP-LRP (TL hooks) against LXT, the AttnLRP authors' library, on a
GPT-2 and on Llama-architecture models (rotary attention, RMSNorm, gated MLP, grouped-query
attention).

LXT is not a dependency. Get its source into a throwaway place and point ``--lxt`` at the
folder that holds the ``lxt`` package, e.g.::

    pip download lxt==2.1 --no-deps -d /tmp/lxt && tar xzf /tmp/lxt/lxt-2.1.tar.gz -C /tmp/lxt
    python benchmarks/attribution_lrp_vs_lxt.py --lxt /tmp/lxt/lxt-2.1

Only LXT's rule code is used (``lxt/efficient/rules.py`` and ``patches.py``). LXT's package
``__init__`` imports model files that do not import under transformers 5.x, so the two
files are loaded on their own and its per-model patch maps are applied by hand:

* GPT-2 (``lxt/efficient/models/gpt2.py``): ``LayerNorm.forward`` ← ``layer_norm_forward``
  (standard deviation detached), ``GPT2MLP.forward`` with the identity rule on the
  activation, and the attention wrapper on ``eager_attention_forward`` (q and k gradients
  divided by 4, v by 2; CP-LRP: q and k detached).
* Llama (``lxt/efficient/models/llama.py``): ``LlamaRMSNorm.forward`` ← ``rms_norm_forward``,
  ``LlamaMLP.forward`` ← ``gated_mlp_forward`` (CP-LRP: ``cp_gated_mlp_forward``), and the same
  attention wrapper on ``eager_attention_forward`` (which receives q and k after the rotary
  embedding and k/v before ``repeat_kv``). LXT's ``patch_attention`` also replaces
  ``ALL_ATTENTION_FUNCTIONS`` by a plain dict, which transformers 5.x can no longer call
  (``get_interface``); with ``attn_implementation="eager"`` only ``eager_attention_forward``
  runs, so only it is wrapped.

Random models (3 layers, d_model 64, attention weights scaled up so that patterns are not
uniform; Llama: 4 query heads, 2 key/value heads, SiLU (SwiGLU) or tanh-GELU (GeGLU) gate)
are saved and loaded into TransformerLens with ``mechinterp.load`` (norms folded); the
relevance of each input token (token embedding × modified gradient) for a logit difference
is compared. Prints the largest difference per model and rule set, and, to show the check
can fail, that of plain gradient × input (no rules) against LXT.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import types
import warnings
from pathlib import Path

import torch


def load_lxt(folder: str):
    pkg = types.ModuleType("lxt")
    pkg.__path__ = [str(Path(folder) / "lxt")]
    eff = types.ModuleType("lxt.efficient")
    eff.__path__ = [str(Path(folder) / "lxt" / "efficient")]
    sys.modules.update({"lxt": pkg, "lxt.efficient": eff})
    rules = importlib.import_module("lxt.efficient.rules")
    patches = importlib.import_module("lxt.efficient.patches")
    return rules, patches


def _scale_up(hf, attn_key: str) -> None:
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if attn_key in name:
                p.mul_(6 if attn_key == "attn.c_attn.weight" else 3)
            if "wte" in name or "wpe" in name or "embed_tokens" in name:
                p.mul_(5)


def gpt2_case():
    import transformers.models.gpt2.modeling_gpt2 as mg
    from transformers import GPT2Config

    cfg = GPT2Config(vocab_size=48, n_positions=32, n_embd=64, n_layer=3, n_head=4, attn_implementation="eager",
                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    torch.manual_seed(0)
    hf = mg.GPT2LMHeadModel(cfg)
    _scale_up(hf, "attn.c_attn.weight")

    def build(rules, patches, variant):
        module = importlib.reload(mg)
        torch.nn.LayerNorm.forward = patches.layer_norm_forward

        def mlp_forward(self, hidden):  # LXT's GPT-2 MLP patch (lxt/efficient/models/gpt2.py)
            hidden = self.c_fc(hidden)
            hidden = rules.identity_rule_implicit(self.act, hidden)
            return self.c_proj(hidden)

        module.GPT2MLP.forward = mlp_forward
        wrap = patches.wrap_attention_forward if variant == "attn_lrp" else patches.cp_wrap_attention_forward
        module.eager_attention_forward = wrap(module.eager_attention_forward)
        return module.GPT2LMHeadModel(cfg), lambda m: m.transformer.wte

    return hf, build, mg


def llama_case(act: str):
    import transformers.models.llama.modeling_llama as ml
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=48, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=32, hidden_act=act, attn_implementation="eager",
                      tie_word_embeddings=False, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    hf = ml.LlamaForCausalLM(cfg)
    _scale_up(hf, "self_attn.q_proj")
    _scale_up(hf, "self_attn.k_proj")
    with torch.no_grad():  # non-trivial RMSNorm weights, so that folding them into TL's weights is checked
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))

    def build(rules, patches, variant):
        module = importlib.reload(ml)
        module.LlamaRMSNorm.forward = patches.rms_norm_forward
        module.LlamaMLP.forward = patches.gated_mlp_forward if variant == "attn_lrp" else patches.cp_gated_mlp_forward
        wrap = patches.wrap_attention_forward if variant == "attn_lrp" else patches.cp_wrap_attention_forward
        module.eager_attention_forward = wrap(module.eager_attention_forward)
        return module.LlamaForCausalLM(cfg), lambda m: m.model.embed_tokens

    return hf, build, ml


def compare(name: str, case, rules, patches) -> list[str]:
    import mechinterp
    from mechinterp.attribution.base import prepare_prompt
    from mechinterp.attribution.forward import forward_scores, token_embeddings
    from mechinterp.attribution.lrp import lrp_hooks
    from mechinterp.attribution.targets import Contrast

    hf, build, hf_module = case
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    folder = tempfile.mkdtemp()
    hf.save_pretrained(folder)
    tl = mechinterp.load(folder)
    tokens = torch.tensor([0, 5, 9, 3, 7, 7, 20, 11, 30, 2])
    good, bad = 4, 17
    prep = prepare_prompt(tl, tokens, Contrast(good, bad))
    rows = []

    def relevance(hooks) -> torch.Tensor:
        e = token_embeddings(tl, prep.batch_tokens).detach().requires_grad_(True)
        v = forward_scores(tl, prep.batch_tokens, prep.target, embed=e, fwd_hooks=hooks)
        (g,) = torch.autograd.grad(v[0, 0], e)
        return (g * e).sum(-1)[0].detach()

    plain = relevance(())
    for variant in ("attn_lrp", "cp_lrp"):
        ours = relevance(lrp_hooks(tl, variant))
        ln_forward = torch.nn.LayerNorm.forward
        try:
            model, embedding = build(rules, patches, variant)
            model.load_state_dict(state)
            model.eval()
            e = embedding(model)(tokens[None]).detach().requires_grad_(True)
            logits = model(inputs_embeds=e).logits[0, -1]
            (logits[good] - logits[bad]).backward()
            theirs = (e.grad * e).sum(-1)[0].detach()
        finally:
            torch.nn.LayerNorm.forward = ln_forward
            importlib.reload(hf_module)
        rows.append(f"| {name} | {variant} | {float((ours - theirs).abs().max()):.1e} | {float(theirs.abs().max()):.3f} "
                    f"| {float((plain - theirs).abs().max()):.1e} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lxt", required=True, help="folder holding LXT's source package 'lxt'")
    parser.add_argument("--models", nargs="+", default=["gpt2", "llama-swiglu", "llama-geglu"],
                        choices=["gpt2", "llama-swiglu", "llama-geglu"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    rules, patches = load_lxt(args.lxt)
    cases = {"gpt2": gpt2_case, "llama-swiglu": lambda: llama_case("silu"),
             "llama-geglu": lambda: llama_case("gelu_pytorch_tanh")}
    print("| model | variant | max abs diff (ours vs LXT) | largest relevance | gradient × input vs LXT |")
    print("|---|---|---|---|---|")
    for name in args.models:
        for row in compare(name, cases[name](), rules, patches):
            print(row)


if __name__ == "__main__":
    main()
