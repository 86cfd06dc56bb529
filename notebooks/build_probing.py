"""Build notebooks/probing.ipynb (outputs stripped): linear probes on zoo:toy-lm.

Run:  .venv/bin/python notebooks/build_probing.py            # writes the notebook
      .venv/bin/python notebooks/build_probing.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("probing.ipynb")

CELLS = [
    ("md", """# Linear probes on `zoo:toy-lm`

Three questions, each with the statistics a probe needs to be believed: held-out scores with 95%
intervals, the Hewitt & Liang **control task** (random labels tied to a word type) and its
**selectivity**, two **random-direction** baselines (raw, and whitened: near chance) and the **majority** class. Then the causal
question: does the model *use* the direction the probe found?

1. Sentiment polarity of a review (`sentiment` task).
2. Which name is the subject and which the indirect object in IOI (`ioi` task).
3. Country identity in `The capital of X is` (`facts` task)."""),
    ("code", """import numpy as np
import torch

import mechinterp
from mechinterp import probes

torch.set_num_threads(1)
model = mechinterp.load("zoo:toy-lm")
model.cfg.n_layers, model.cfg.d_model"""),
    ("md", """## 1. Sentiment polarity

Train on the task's `train` split and test on its held-out `test` split (new reviews). The control
labels are tied to the first sentiment word of each review: a probe that memorises words would
solve the control task too."""),
    ("code", """train = mechinterp.tasks.load("sentiment", model, n=160, split="train")
test = mechinterp.tasks.load("sentiment", model, n=128, split="test")
data_train = probes.from_task(model, train, "sentiment", positions="last", progress=False)
data_test = probes.from_task(model, test, "sentiment", positions="last", progress=False)
sweep = probes.probe_sweep(data_train, test=data_test, n_random=3)
sweep.to_dataframe().round(3)"""),
    ("code", """sweep.plot();"""),
    ("md", """Same activations, scikit-learn's `LogisticRegression` (with `StandardScaler`, the objective our
batched trainer minimises), layer by layer:"""),
    ("code", """from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

for layer in range(model.cfg.n_layers):
    sk = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(data_train.x(layer).numpy(), data_train.y)
    print(f"layer {layer}: ours {sweep.score[layer][0]:.3f}   sklearn {sk.score(data_test.x(layer).numpy(), data_test.y):.3f}")"""),
    ("md", """### Is the direction causal?

The mass-mean direction `v = mu_positive - mu_negative` at the final layer. Projecting it out of
the residual stream (all positions) should destroy the sentiment logit difference; projecting out
random directions should not. Steering each review by `scale * sign * v` (sign +1 for positive,
-1 for negative reviews) with `scale = -1` moves each review onto the other class's mean."""),
    ("code", """layer = model.cfg.n_layers - 1
mm = probes.MassMeanProbe().fit(data_train.x(layer).numpy(), data_train.y)
direction = mm.means_[1] - mm.means_[0]
causal = probes.causal_check(model, test, direction, layer=layer, signs=2 * data_test.y - 1,
                             scales=[-2.0, -1.0, -0.5, 0.5, 1.0], n_random=2)
causal.to_dataframe().round(3)"""),
    ("code", """causal.plot();"""),
    ("md", """## 2. Subject vs indirect object in IOI

Is the first name of `When A and B went ...` the subject (BABA) or the indirect object (ABBA)?
The label is `subject_first`, probed at the last token (`... gave a drink to`), where the model must
output the indirect object: to do so it has to know which name was repeated."""),
    ("code", """ioi_train = mechinterp.tasks.load("ioi", model, n=160, split="train")
ioi_test = mechinterp.tasks.load("ioi", model, n=128, split="test")
kw = dict(positions="last", progress=False)
ioi_sweep = probes.probe_sweep(probes.from_task(model, ioi_train, "subject_first", **kw),
                               test=probes.from_task(model, ioi_test, "subject_first", **kw), n_random=2)
ioi_sweep.to_dataframe().round(3)"""),
    ("code", """ioi_sweep.plot();"""),
    ("md", """## 3. Country identity

A multi-class probe (one class per country) at the country token, with 3-fold cross-validation.
Chance is 1/countries. Here the property *is* the word type, so a Hewitt–Liang control tied to the
country word would just relabel the classes; the control is instead a random label per prompt
(the default `types`), which measures what a probe gets by memorising individual examples."""),
    ("code", """facts = mechinterp.tasks.load("facts", model, n=300, split="train")
countries, counts = np.unique(facts.ground_truth.labels["country"], return_counts=True)
keep = [i for i, c in enumerate(facts.ground_truth.labels["country"]) if counts[list(countries).index(c)] >= 3]
position = [facts.ground_truth.positions[i] for i in keep]
tokens = facts.clean_tokens[keep]
labels = [facts.ground_truth.labels["country"][i] for i in keep]
country = probes.collect_activations(model, tokens, labels, positions=position, progress=False)
country_sweep = probes.probe_sweep(country, cv=3, n_random=2)
print(f"{len(set(labels))} countries, chance {country_sweep.chance:.3f}")
country_sweep.to_dataframe().round(3)"""),
    ("code", """country_sweep.plot();"""),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
