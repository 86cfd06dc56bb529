"""Build ``notebooks/attribution.ipynb`` (outputs stripped) with nbformat.

Run:  .venv/bin/python notebooks/build_attribution.py            # writes the notebook
      .venv/bin/python notebooks/build_attribution.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("attribution.ipynb")

CELLS = [
    ("md", "# Input attribution\n\nWhich prompt tokens drive a prediction? One entry point, "
           "`mechinterp.attribution.attribute(model, prompt, target, method=...)`, nine methods, "
           "targets from a next-token logit to a generated continuation, faithfulness metrics. "
           "See `docs/howto/attribution.md` for the formulas."),
    ("code", "import warnings, torch\nimport mechinterp\nfrom mechinterp.attribution import (attribute, method_names, Contrast, Continuation,\n"
             "    Generate, aggregate, faithfulness, plot_comparison, merge_words, group_scores)\n"
             "torch.set_num_threads(1)\nwarnings.filterwarnings('ignore', category=DeprecationWarning)\nmethod_names()"),
    ("md", "## A model and a task with known ground truth\n\n`zoo:toy-lm` is trained on templated facts; "
           "the facts task says, per prompt, which position determines the answer (the country)."),
    ("code", "model = mechinterp.load('zoo:toy-lm')\n"
             "task = mechinterp.tasks.load('facts', model, n=8, seed=0)\n"
             "prompt = task.clean_tokens[0, : int(task.lengths[0])]\n"
             "target = Contrast(int(task.correct_tokens[0]), int(task.wrong_tokens[0]))\n"
             "truth = task.ground_truth.positions[0]\n"
             "print(model.to_str_tokens(prompt), 'ground truth positions:', truth)"),
    ("md", "## Integrated gradients, with its convergence delta\n\n"
           "toy-lm was trained with template-word dropout (a template word replaced by `<pad>` with probability 0.15), "
           "so `<pad>` is its own \"missing word\" and `baseline='pad'` (BOS kept) is the absence baseline by construction. "
           "The library default, `baseline='auto'`, picks it: toy-lm declares `<pad>` as its absence token (`model.mechinterp_meta`); captum's zero baseline is `baseline='zero'`."),
    ("code", "ig = attribute(model, prompt, target, method='ig', n_steps=64, baseline='pad')\n"
             "print('relative completeness gap:', ig.metadata['relative_delta'])\nig.top_k(3)"),
    ("code", "ig"),
    ("md", "## Two IG options: a counterfactual baseline, and the adaptive rule\n\n"
           "With the pad baseline IG ranks the country first on every one of 30 toy-lm facts prompts; with the zero "
           "baseline on none: from zero embeddings, two layer-3 heads look at the country only late on the path, and IG "
           "credits the template words that drive that switch (see `benchmarks/results/attribution.md`). A minimal "
           "pair as baseline asks the contrastive question on any model: which tokens make the answer this capital "
           "rather than that one? "
           "`rule='adaptive'` bisects the interval where IG's exact completeness check fails."),
    ("code", "tokens = model.to_tokens(prompt)[0] if isinstance(prompt, str) else prompt\n"
             "cf = task.corrupted_tokens[0, : len(tokens)] if 'task' in globals() else torch.cat([tokens[:3], (tokens[3:4] - 2) % 45 + 3, tokens[4:]])\n"
             "ig_cf = attribute(model, tokens, target, method='ig', baseline=cf, n_steps=32)\nprint(ig_cf.top_k(2))\n"
             "ad = attribute(model, tokens, target, method='ig', rule='adaptive', n_steps=256, baseline='pad')\n"
             "print('adaptive rule: relative delta', ad.metadata['relative_delta'], 'with', ad.metadata['n_gradient_rows'], 'gradient rows')"),
    ("md", "## Every method side by side"),
    ("code", "opts = {'kernel_shap': {'n_samples': 256}, 'lime': {'n_samples': 256},\n"
             "        'integrated_gradients': {'n_steps': 32, 'baseline': 'pad'}}\n"
             "results = {}\nfor m in method_names():\n    try:\n        results[m] = attribute(model, prompt, target, method=m, warn=False, **opts.get(m, {}))\n"
             "    except mechinterp.MechinterpError as err:\n        print(m, 'skipped:', err)\n"
             "for m, r in results.items():\n    row = r.scores[0].clone(); row[0] = -float('inf')\n"
             "    print(f'{m:<22} top token {int(row.argmax())}  ({\"hit\" if int(row.argmax()) in truth else \"miss\"})')"),
    ("code", "plot_comparison(list(results.values()));"),
    ("md", "## Aggregating methods, grouping into spans"),
    ("code", "agg = aggregate([results['integrated_gradients'], results['attn_lrp'], results['occlusion']], how='mean')\n"
             "n = len(agg.tokens)\ngroup_scores(agg, {'start': (1, n // 2), 'end': (n // 2, n)}).to_dataframe()"),
    ("md", "## Faithfulness: deletion and insertion curves"),
    ("code", "f = faithfulness(model, prompt, target, results['integrated_gradients'])\nprint(f.summary())\nf.plot();"),
    ("md", "## Generation attribution: an output × input matrix in one teacher-forced pass"),
    ("code", "gen = attribute(model, prompt, Generate(4), method='ig', n_steps=32)\nprint(gen.targets)\ngen.plot();"),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
