"""Build ``notebooks/patching.ipynb`` (outputs stripped) with nbformat.

Run:  .venv/bin/python notebooks/build_patching.py            # writes the notebook
      .venv/bin/python notebooks/build_patching.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("patching.ipynb")

CELLS = [
    ("md", """# Patching with `mechinterp.patching`

On `zoo:toy-lm`, a 4-layer language model trained on tasks with known answers. Its model card lists,
for IOI, the heads with the largest single-head patching effects (L1H2, then L1H1). We:

1. sweep the residual stream by layer × position (activation patching),
2. find the IOI heads by per-head patching and check them against the card,
3. separate their *direct* effect on the logits with path patching,
4. trace where a fact is recalled (causal tracing, ROME),
5. check how well the cheap gradient approximation (attribution patching) agrees with exact patching.

Every sweep runs batched: patched runs stacked in the batch, starting at the patched layer and position."""),
    ("code", """import torch
import mechinterp
from mechinterp.patching import activation_patch, path_patch, causal_trace, attribution_patch, compare_with_exact

torch.set_num_threads(1)
model = mechinterp.load("zoo:toy-lm")
ioi = mechinterp.tasks.load("ioi", model, n=24, seed=0)
# one template length, so that positions line up across prompts
keep = (ioi.lengths == ioi.lengths[0]).nonzero().flatten()
print(len(keep), "prompts like:", ioi.clean_prompts[int(keep[0])], "->", ioi.correct_answers[int(keep[0])])"""),
    ("md", """## 1. Residual stream by layer × position

Denoising: run the corrupted (ABC) prompts, restore one clean `resid_pre` state. 0 = corrupted, 1 = clean."""),
    ("code", """n = int(ioi.lengths[0])
clean, corrupted = ioi.clean_tokens[keep, :n], ioi.corrupted_tokens[keep, :n]
rows = torch.arange(len(keep))
correct, wrong = ioi.correct_tokens[keep], ioi.wrong_tokens[keep]
metric = lambda logits: logits[rows, -1, correct] - logits[rows, -1, wrong]
resid = activation_patch(model, clean, corrupted, metric, site="resid_pre", by="position")
resid.plot();"""),
    ("md", """## 2. Which heads matter? (noising, as in the model card)"""),
    ("code", """heads = activation_patch(model, ioi, site="z", by="head", direction="noising")
card = mechinterp.zoo.read_json("toy-lm", "circuit.json")["effects"]["ioi"]
for labels, value in heads.top(4):
    name = labels["layer"] + labels["head"]
    print(f"{name}: ours {value:+.2f}   card {card.get(name, float('nan')):+.2f}")
heads.plot();"""),
    ("md", """## 3. Path patching: the direct effect on the logits

Sender = each head; receiver = the final residual stream; every other head frozen. A head whose
activation-patching effect survives here acts on the logits directly (a "name mover")."""),
    ("code", """direct = path_patch(model, ioi, receivers="resid_final", direction="noising")
print(direct.top(3))
direct.plot();"""),
    ("md", """## 4. Causal tracing on `facts`

Noise (3 × the embedding std) on the country token, then restore one clean state per (token, layer).
Shown: the residual stream, and MLP outputs restored over a window of 2 layers."""),
    ("code", """facts = mechinterp.tasks.load("facts", model, n=12, seed=0)
same = (facts.lengths == facts.lengths[0]).nonzero().flatten().tolist()
m = int(facts.lengths[0])
subjects = [facts.ground_truth.positions[i] for i in same]
print(facts.clean_prompts[same[0]], "->", facts.correct_answers[same[0]])
trace = causal_trace(model, facts.clean_tokens[same, :m], subjects, "prob", answers=facts.correct_tokens[same], n_samples=5)
trace_mlp = causal_trace(model, facts.clean_tokens[same, :m], subjects, "prob", answers=facts.correct_tokens[same], kind="mlp", window=2, n_samples=5)
import matplotlib.pyplot as plt
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
trace.plot(ax=axes[0]); trace_mlp.plot(ax=axes[1]); fig.tight_layout()"""),
    ("md", """## 5. Attribution patching vs exact patching

Two forwards and one backward estimate every patch at once. How close is it here?"""),
    ("code", """for site, by in [("resid_pre", "position"), ("z", "head")]:
    cmp = compare_with_exact(model, ioi, site=site, by=by)
    ig = compare_with_exact(model, ioi, site=site, by=by, ig_steps=5)
    print(f"{site} by {by}: attribution r = {cmp.pearson:.3f}, with IG r = {ig.pearson:.3f}")
cmp.plot();"""),
    ("md", """Every result saves as JSON (`r.save("r.json")`) or a self-contained page (`r.save("r.html")`), and
`r.to_dataframe()` gives one row per sweep point. The CLI does the same in one command:
`mechinterp patch --model zoo:toy-lm --task ioi --site z --by head --direction noising --out out/heads`."""),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
