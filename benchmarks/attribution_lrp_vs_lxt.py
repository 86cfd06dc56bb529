"""Check: our AttnLRP / CP-LRP (TL hooks) against LXT, the AttnLRP authors' library, on one GPT-2.

LXT is not a dependency. Get its source into a throwaway place and point ``--lxt`` at the
folder that holds the ``lxt`` package, e.g.::

    pip download lxt==2.1 --no-deps -d /tmp/lxt && tar xzf /tmp/lxt/lxt-2.1.tar.gz -C /tmp/lxt
    python benchmarks/attribution_lrp_vs_lxt.py --lxt /tmp/lxt/lxt-2.1

Only LXT's rule code is used (``lxt/efficient/rules.py`` and ``patches.py``: LayerNorm with
the standard deviation detached, the identity rule on the MLP activation, and the attention
wrapper that divides the gradient of q and k by 4 and of v by 2, or detaches q and k for
CP-LRP). LXT's package ``__init__`` imports model files that do not import under
transformers 5.x, so the two files are loaded on their own, and its GPT-2 patches are applied
by hand to ``eager_attention_forward``, ``GPT2MLP.forward`` and ``LayerNorm.forward``.

A random 3-layer GPT-2 (d_model 64, attention weights scaled up so that patterns are not
uniform) is saved and loaded into TransformerLens with ``mechinterp.load`` (LayerNorm
folded, weights centred); the relevance of each input token (token embedding × modified
gradient) for a logit difference is compared. Prints the largest difference per rule set.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lxt", required=True, help="folder holding LXT's source package 'lxt'")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rules, patches = load_lxt(args.lxt)
    import transformers.models.gpt2.modeling_gpt2 as mg
    from transformers import GPT2Config

    import mechinterp
    from mechinterp.attribution.base import prepare
    from mechinterp.attribution.forward import forward_scores, token_embeddings
    from mechinterp.attribution.lrp import lrp_hooks
    from mechinterp.attribution.targets import Contrast

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=48, n_positions=32, n_embd=64, n_layer=3, n_head=4, attn_implementation="eager",
                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    hf = mg.GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "attn.c_attn.weight" in name:
                p.mul_(6)
            if "wte" in name or "wpe" in name:
                p.mul_(5)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    folder = tempfile.mkdtemp()
    hf.save_pretrained(folder)
    tl = mechinterp.load(folder)
    tokens = torch.tensor([0, 5, 9, 3, 7, 7, 20, 11, 30, 2])
    good, bad = 4, 17
    prep = prepare(tl, tokens, Contrast(good, bad))

    def ours(variant: str) -> torch.Tensor:
        e = token_embeddings(tl, prep.batch_tokens).detach().requires_grad_(True)
        v = forward_scores(tl, prep.batch_tokens, prep.target, embed=e, fwd_hooks=lrp_hooks(tl, variant))
        (g,) = torch.autograd.grad(v[0, 0], e)
        return (g * e).sum(-1)[0].detach()

    def lxt(variant: str) -> torch.Tensor:
        module = importlib.reload(mg)
        ln_forward = torch.nn.LayerNorm.forward
        try:
            torch.nn.LayerNorm.forward = patches.layer_norm_forward

            def mlp_forward(self, hidden):  # LXT's GPT-2 MLP patch (lxt/efficient/models/gpt2.py)
                hidden = self.c_fc(hidden)
                hidden = rules.identity_rule_implicit(self.act, hidden)
                return self.c_proj(hidden)

            module.GPT2MLP.forward = mlp_forward
            wrap = patches.wrap_attention_forward if variant == "attn_lrp" else patches.cp_wrap_attention_forward
            module.eager_attention_forward = wrap(module.eager_attention_forward)
            model = module.GPT2LMHeadModel(cfg)
            model.load_state_dict(state)
            model.eval()
            e = model.transformer.wte(tokens[None]).detach().requires_grad_(True)
            logits = model(inputs_embeds=e).logits[0, -1]
            (logits[good] - logits[bad]).backward()
            return (e.grad * e).sum(-1)[0].detach()
        finally:
            torch.nn.LayerNorm.forward = ln_forward
            importlib.reload(mg)

    print("| variant | max abs diff (ours vs LXT) | largest relevance |")
    print("|---|---|---|")
    for variant in ("attn_lrp", "cp_lrp"):
        a, b = ours(variant), lxt(variant)
        print(f"| {variant} | {float((a - b).abs().max()):.1e} | {float(b.abs().max()):.3f} |")


if __name__ == "__main__":
    main()
