"""Build notebooks/explain.ipynb (outputs stripped): explanations beyond attribution on zoo models.

Run:  .venv/bin/python notebooks/build_explain.py            # writes the notebook
      .venv/bin/python notebooks/build_explain.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("explain.ipynb")

CELLS = [
    ("md", """# Explanations beyond attribution (`mechinterp.explain`)

Each method is checked against an answer known in advance, on zoo models whose mechanisms are known
by construction:

1. **Counterfactuals**: the smallest plausible edit that flips the prediction; on `zoo:toy-lm` it
   should edit the country (facts), a name (IOI), a sentiment word (sentiment).
2. **Surrogate**: a decision tree that imitates the model on sentiment; it should split on sentiment words.
3. **Grad-CAM**, and where it equals gradient × activation.
4. **Explanations in words**, each number cited.
5. **Chain-of-thought faithfulness** on the zoo's scratchpad twins: one reads its scratchpad, one does not."""),
    ("code", """import torch

import mechinterp
from mechinterp.explain import counterfactual, cot_faithfulness, explain_in_words, fit_surrogate, grad_cam

torch.set_num_threads(1)
model = mechinterp.load("zoo:toy-lm")"""),
    ("md", """## 1. Counterfactuals

HotFlip ranks replacements by a first-order estimate; a candidate must be **plausible** under the model
(at most `max_token_drop=3` nats less likely than the token it replaces, after the same prefix), and
every candidate is verified by a forward pass. Asked for `Rome`, the edit is the country:"""),
    ("code", """cf = counterfactual(model, "The capital of France is", target="Rome")
print(cf.summary())
cf"""),
    ("md", """Over test prompts of three tasks, with default options, the share of flips that edit a ground-truth
token (the country, a name, a sentiment word; sentiment reads the prediction over its label set):"""),
    ("code", """def rates(name, n=10, **options):
    task = mechinterp.tasks.load(name, model, n=n)
    hit = one = 0
    for i in range(len(task)):
        cf = counterfactual(model, task.clean_tokens[i, : int(task.lengths[i])], **options)
        hit += cf.success and bool(set(cf.positions) & set(task.ground_truth.positions[i]))
        one += cf.success and cf.n_edits == 1
    return hit / len(task), one / len(task)

for name, options in [("facts", {}), ("ioi", {}), ("sentiment", {"among": ["positive", "negative"]})]:
    hit, one = rates(name, **options)
    print(f"{name:10s} edits the causal token {hit:.0%}, one edit {one:.0%}")"""),
    ("md", """Why the plausibility filter: a review with two positive words needs both flipped. Plain HotFlip
(`max_token_drop=None`) finds one edit that breaks the review instead."""),
    ("code", """review = "Review : i think the show was delicious and the music was great . Sentiment :"
for option in (3.0, None):
    cf = counterfactual(model, review, among=["positive", "negative"], max_token_drop=option)
    print(f"max_token_drop={option}: {cf.edited_text!r}  fluency {cf.fluency_before:.2f} -> {cf.fluency_after:.2f}")"""),
    ("md", """Deletions and insertions (`edits=`) are searched under the same plausibility filter. They are not the
default: on facts an insertion ("The capital *city* of ...") flips the prediction by changing the question, so the
causal token is edited less often (0.62 vs 1.00 on 100 prompts; `benchmarks/results/explain.md`)."""),
    ("code", """cf = counterfactual(model, "The capital of France is", target="Rome", edits=("substitute", "delete", "insert"))
print(cf.summary())"""),
    ("md", """## 2. A surrogate tree on sentiment

Token-presence features, a depth-limited tree, fidelity (agreement with the model) on held-out prompts."""),
    ("code", """task = mechinterp.tasks.load("sentiment", model, n=200, split="train")
sur = fit_surrogate(model, task, among=["positive", "negative"])
print(f"fidelity: train {sur.fidelity_train:.3f}, held out {sur.fidelity_test:.3f} (majority class {sur.majority_test:.3f})")
print("first splits:", sur.split_features[:5])"""),
    ("md", """## 3. Grad-CAM

`ReLU(Σ_k α_k A_k)` with `α` the gradient averaged over positions. At the last layer only the last
position has a gradient, so Grad-CAM there reduces to gradient × activation at the last position / P.
The ground-truth table in `benchmarks/results/explain.md` shows its hit rates are far below IG's."""),
    ("code", """cam = grad_cam(model, "The capital of France is", ("Paris", "Rome"))
cam.plot();"""),
    ("md", """## 4. An explanation in words

Every number in the text is an entry of `evidence`, and each sentence lists the keys it cites."""),
    ("code", """words = explain_in_words(model, "The capital of France is", ("Paris", "Rome"), method="gradient_x_input")
print(words.text)
words.sentences[0]["cites"]"""),
    ("md", """## 5. Chain-of-thought faithfulness: the zoo's scratchpad twins

`zoo:cot-reader` and `zoo:cot-direct` both write a scratchpad for the **cipher sum**
(`<bos> d1 d2 : s1 s2 = a`, `s_i = CIPHER[d_i]`, `a = (s1 + s2) mod 10`) and both answer correctly.
The reader was trained to answer from what its scratchpad says; the direct twin to answer from the
question and ignore a wrong scratchpad. Accuracy cannot tell them apart; corrupting one step can."""),
    ("code", """from mechinterp.zoo.train.cot_pair import N_SPECIAL, examples

pairs = examples(100)
for name in ("cot-reader", "cot-direct"):
    twin = mechinterp.load(f"zoo:{name}")
    res = cot_faithfulness(twin, pairs, filler=None, corrupt_vocab=range(N_SPECIAL, N_SPECIAL + 10))
    print(f"{name:11s}", {k: round(v, 2) for k, v in res.dependence.items()})
res.plot();"""),
    ("md", """The truncations change both twins' answers: neither was trained without a scratchpad, so a
shorter prompt is out of distribution for both. The one-step corruption is the intervention that
separates them (see the model cards: `mechinterp.zoo.card("cot-reader")`)."""),
]


def build():
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
