"""Build notebooks/lens.ipynb (outputs stripped): logit lens, tuned lens, DLA, max-activating examples and steering on zoo:toy-lm.

Run:  .venv/bin/python notebooks/build_lens.py            # writes the notebook
      .venv/bin/python notebooks/build_lens.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("lens.ipynb")

CELLS = [
    ("md", """# Inside the residual stream on `zoo:toy-lm`

Five ways to read what the residual stream holds, all from the shared activation cache:

1. **Logit lens**: every layer's residual through the final norm and the unembedding.
2. **Tuned lens** (Belrose et al. 2023): one trained affine translator per layer first.
3. **Direct logit attribution**: what each head and MLP writes straight into a logit difference.
4. **Max-activating examples** and an **optimised input** for a probe direction.
5. **Steering**: adding a contrastive vector flips the model's sentiment label.

Each comes with the check that makes it believable: the last lens row is the model's own output,
the tuned lens beats the logit lens on held-out prompts, DLA's parts sum to the logit difference,
the top examples carry the concept, and a random vector of the same norm does not steer."""),
    ("code", """import torch

import mechinterp
from mechinterp import features, lens

torch.set_num_threads(1)
model = mechinterp.load("zoo:toy-lm")
task = mechinterp.tasks.load("ioi", model, n=64, split="test")
task.clean_prompts[0], task.correct_answers[0], task.wrong_answers[0]"""),
    ("md", """## 1. Logit lens, and DLA, from one cached pass

Fetch every site the lens and DLA read into one `SharedCache`; both then read it without another
forward pass."""),
    ("code", """cache = mechinterp.SharedCache(model, task.clean_prompts, positions="last", progress=False)
cache.fetch([h for _, h in lens.residual_rows(model, "resid_post")] + lens.dla_sites(model))
ll = lens.logit_lens(model, cache, answers=task.correct_answers)
for row, p, kl in zip(ll.rows, ll.mean_answer_prob(), ll.mean_kl()):
    print(f"{row}: p(correct) {p:.3f}   KL to the final distribution {kl:.3f}")"""),
    ("md", """The indirect object becomes the top prediction at layer 1. The last row *is* the model's
output: its probabilities equal the model's softmax."""),
    ("code", """batch = mechinterp.tokenize(model, task.clean_prompts)
with torch.no_grad():
    final = model(batch.tokens)[torch.arange(len(task)), batch.last_pos].softmax(-1)
correct = mechinterp.answer_tokens(model, task.correct_answers)
print("max |lens - model| at the last layer:", float((ll.answer_probs[-1] - final[torch.arange(len(task)), correct]).abs().max()))
ll.top_tokens(prompt=0)"""),
    ("code", """ll.plot();"""),
    ("md", """When the question is only the answer's logit difference per layer, the **answer lens** reads it with one dot
product per row (no vocabulary decode: 1.1x a cached pass on SmolLM2's 49k tokens). With the final norm's scale
frozen, consecutive rows differ by exactly the DLA of the layer in between."""),
    ("code", """al = lens.answer_lens(model, cache, task.correct_answers, wrong=task.wrong_answers)
frozen = lens.answer_lens(model, cache, task.correct_answers, wrong=task.wrong_answers, norm="frozen")
print("logit difference positive from", al.first_row_above(0.0))
print("last row = the model's logit difference:", float((al.values[-1] - frozen.values[-1]).abs().max()) < 1e-4)
al.plot();"""),
    ("md", """## 2. Tuned lens

Train one affine translator per layer on the `train` split (a short fit), then compare KL to the
final distribution on the held-out prompts."""),
    ("code", """train = mechinterp.tasks.load("ioi", model, n=64, split="train")
tuned = lens.TunedLens(steps=40, lr=3e-3).fit(model, train.clean_prompts, batch_size=64)
cmp = lens.compare_lenses(model, task.clean_prompts, {"logit": None, "tuned": tuned}, batch_size=64)
for i, row in enumerate(cmp.rows):
    print(f"{row}: KL logit lens {float(cmp.kl['logit'][i]):.3f}   tuned lens {float(cmp.kl['tuned'][i]):.3f}")"""),
    ("code", """cmp.plot();"""),
    ("md", """## 3. Direct logit attribution

Split `logit(correct) - logit(wrong)` into each component's direct contribution, with the final
norm's scale frozen at the clean run. The parts plus the bias constant sum to the logit difference."""),
    ("code", """dla = lens.direct_logit_attribution(model, cache, task.correct_answers, wrong=task.wrong_answers)
print("largest |sum of parts - logit difference|:", lens.check_exact(dla))
dla.top_k(6)"""),
    ("code", """dla.head_matrix()"""),
    ("md", """TransformerLens's own route on the same prompts (`stack_head_results` then the unembedding
direction, scale frozen) gives the same per-head numbers:"""),
    ("code", """tokens = batch.tokens[:8]
with torch.no_grad():
    _, tl_cache = model.run_with_cache(tokens)
rows, last = torch.arange(8), batch.last_pos[:8]
stack = tl_cache.stack_head_results(layer=-1)[:, rows, last]
stack = stack - stack.mean(-1, keepdim=True)  # LNPre centres; its weight is folded
dirs = model.tokens_to_residual_directions(correct[:8]) - model.tokens_to_residual_directions(
    mechinterp.answer_tokens(model, task.wrong_answers[:8]))
tl_heads = ((stack / tl_cache["ln_final.hook_scale"][rows, last]) * dirs).sum(-1).detach()
ours = dla.scores[[dla.components.index(f"L{l}H{h}") for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)], :8]
print("max |ours - TL|:", float((ours - tl_heads).abs().max()))"""),
    ("md", """## 4. What makes the sentiment direction fire

The mass-mean direction of review polarity at the last layer (positive minus negative reviews, at
the last token). The top dataset contexts are all positive reviews; the coordinate search then
replaces the best context's last token to push the projection further."""),
    ("code", """senti_train = mechinterp.tasks.load("sentiment", model, n=64, split="train")
senti_test = mechinterp.tasks.load("sentiment", model, n=64, split="test")
hook = "blocks.3.hook_resid_post"
acts = mechinterp.SharedCache(model, senti_train.clean_prompts, positions="last", progress=False)[hook]
positive = torch.tensor([a == "positive" for a in senti_train.correct_answers])
v = acts[positive].mean(0) - acts[~positive].mean(0)
target = features.direction(model, "resid_post", 3, v, "sentiment")
top = features.max_activating_examples(model, senti_test.clean_prompts, target, k=5)
labels = [senti_test.correct_answers[int(i)] for i in top.prompt_index]
labels, top.examples()[:3]"""),
    ("code", """top"""),
    ("code", """context = " ".join(top.tokens[0][1:-1])
best = features.optimise_input(model, target, length=1, prefix=context, steps=20, reference=top)
best.optimised_tokens, best.value, best.best_dataset_value"""),
    ("md", """## 5. Steering

The contrastive vector at each layer (mean over positive minus negative training reviews) is added
to held-out *negative* reviews at every position. At some layer and scale it flips the model's
label to positive; a random vector of the same norm does not."""),
    ("code", """pos = [p for p, a in zip(senti_train.clean_prompts, senti_train.correct_answers) if a == "positive"]
neg = [p for p, a in zip(senti_train.clean_prompts, senti_train.correct_answers) if a == "negative"]
vectors = {l: lens.contrastive_vector(model, pos, neg, l, batch_size=64) for l in range(model.cfg.n_layers)}
held_out = [p for p, a in zip(senti_test.clean_prompts, senti_test.correct_answers) if a == "negative"]
sweep = lens.steering_sweep(model, held_out, vectors, [1.0, 2.0, 4.0], target="positive", other="negative")
layer, scale, success = sweep.best()
i, j = sweep.layers.index(layer), sweep.scales.index(scale)
print(f"unsteered {sweep.baseline_success:.0%}; layer {layer} x{scale:g}: {success:.0%} flipped, "
      f"random vector {float(sweep.random_success[i, j]):.0%}")"""),
    ("code", """sweep.plot();"""),
    ("code", """print(held_out[0])
print(lens.steered_generate(model, held_out[0], vectors[layer], scale=scale, max_new_tokens=1))"""),
    ("md", """The same from the command line (outputs under `out/<command>`):

```
mechinterp lens     # logit lens + DLA on ioi (add --tuned-steps 60 for a tuned lens)
mechinterp maxact   # the sentiment direction's top contexts and an optimised input
mechinterp steer    # the sentiment steering sweep with its random control
```"""),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
