"""Build notebooks/dictionary.ipynb (outputs stripped): sparse autoencoders on known features and on zoo:toy-lm.

Run:  .venv/bin/python notebooks/build_dictionary.py            # writes the notebook
      .venv/bin/python notebooks/build_dictionary.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("dictionary.ipynb")

CELLS = [
    ("md", """# Sparse dictionaries: SAEs that recover known features, then one on `zoo:toy-lm`

1. **Known answer.** Activations built from 64 known sparse directions in 32 dimensions (2x superposition):
   a TopK SAE at the true sparsity must find every direction (mean max cosine near 1), an untrained one must not.
2. **Dead latents.** A run that leaves many latents dead, and the AuxK loss (Gao et al. 2024) that revives them.
3. **A real site.** A TopK SAE on `resid_post` of `zoo:toy-lm` from the shared cache: L0, explained variance,
   CE loss recovered when spliced in; saved in the SAELens format and loaded back."""),
    ("code", """import tempfile

import torch

import mechinterp
from mechinterp import dictionary

torch.set_num_threads(1)"""),
    ("md", """## 1. Known features in superposition"""),
    ("code", """x, directions, _ = dictionary.superposition_data(20000, d=32, n_features=64, p=0.04, seed=0)
sae = dictionary.train_sae(x, architecture="topk", k=3, d_sae=128, batch_size=256, n_epochs=3, lr=3e-3)
mean, best = dictionary.match_directions(directions, sae.W_dec)
torch.manual_seed(1)
untrained = dictionary.SparseAutoencoder(32, 128, "topk", k=3)
print(f"trained: mean max cosine {mean:.3f} (worst {best.min():.3f}); "
      f"untrained: {dictionary.match_directions(directions, untrained.W_dec)[0]:.3f}")
assert mean > 0.95"""),
    ("code", """sae.training_log.plot();"""),
    ("md", """The same on the zoo's *trained* toy model of superposition (Elhage et al. 2022: 64 features in 16 dimensions),
and on a compiled model: every one of `zoo:tracr-prev-tokens`'s 23 residual values (tokens, indices, previous
token, token two back) gets a latent of its own."""),
    ("code", """from mechinterp.zoo.tms import load_tms

tms = load_tms()
_, h = tms.sample(20000)
sae_tms = dictionary.train_sae(h, architecture="topk", k=2, d_sae=128, batch_size=256, n_epochs=5, lr=3e-3)
print(f"toy model of superposition: mean max cosine {dictionary.match_directions(tms.feature_directions(), sae_tms.W_dec)[0]:.3f}")

tracr = mechinterp.load("zoo:tracr-prev-tokens")
words = torch.tensor(tracr.tokenizer.convert_tokens_to_ids(list("abcde")))
g = torch.Generator().manual_seed(0)
tokens = torch.cat([torch.full((2000, 1), tracr.tokenizer.bos_token_id), words[torch.randint(5, (2000, 8), generator=g)]], 1)
_, c = tracr.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
r = c["blocks.1.hook_resid_post"][:, 1:].reshape(-1, tracr.cfg.d_model)
sae_tracr = dictionary.train_sae(r, architecture="standard", l1_coefficient=0.05, d_sae=32, batch_size=256, n_epochs=30, lr=3e-3)
scores = dictionary.match_categorical_features(sae_tracr.W_dec, dictionary.tracr_residual_labels("tracr-prev-tokens"), r)
print(f"tracr-prev-tokens: {sum(v >= 0.9 for v in scores.values())} of {len(scores)} compiled values matched (min cosine {min(scores.values()):.3f})")"""),
    ("md", """## 2. Dead latents: plain TopK vs AuxK

512 sparse features, 512 latents, a high learning rate: without help many latents never fire again."""),
    ("code", """x2, _, _ = dictionary.superposition_data(16000, d=32, n_features=512, p=0.005, seed=0)
common = dict(architecture="topk", k=3, d_sae=512, lr=3e-2, batch_size=256, n_epochs=3, dead_window=2000)
for label, extra in [("plain", {"aux_k": 0}), ("AuxK", {})]:
    s = dictionary.train_sae(x2, **common, **extra)
    dead = float(((s.encode(x2) > 0).sum(0) == 0).float().mean())
    print(f"{label:>6}: dead latents {dead:.1%}, final explained variance {s.training_log.explained_variance[-1]:.3f}")"""),
    ("md", """## 3. A TopK SAE on `zoo:toy-lm`

Train on the shared cache of the task prompts' `train` split; evaluate on the held-out `test` split."""),
    ("code", """model = mechinterp.load("zoo:toy-lm")
train_prompts = [p for name in ("ioi", "facts", "sentiment") for p in mechinterp.tasks.load(name, model, n=48, split="train").clean_prompts]
test_prompts = [p for name in ("ioi", "facts", "sentiment") for p in mechinterp.tasks.load(name, model, n=16, split="test").clean_prompts]
cache = mechinterp.SharedCache(model, train_prompts, progress=False)
lm_sae = dictionary.train_sae(cache, ("resid_post", 2), k=8, expansion_factor=4, batch_size=256, n_epochs=8, lr=3e-3)
result = dictionary.evaluate_sae(model, lm_sae, test_prompts)
result"""),
    ("md", """Spliced with the error term kept, the forward pass is exactly the model's; the SAELens checkpoint loads back
with identical outputs."""),
    ("code", """tokens = model.to_tokens(test_prompts[:4])
with dictionary.splice(model, lm_sae) as state:
    spliced = model(tokens)
print("exact with the error term:", torch.equal(spliced, model(tokens)), "| latents", tuple(state.latents.shape))
folder = dictionary.save_sae(lm_sae, tempfile.mkdtemp())
back = dictionary.load_sae(folder)
acts = cache.get("blocks.2.hook_resid_post")[0]
print("checkpoint round trip equal:", torch.equal(back(acts), lm_sae(acts)), "| files:", sorted(p.name for p in folder.iterdir()))"""),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
