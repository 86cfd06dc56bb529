"""Build notebooks/attribution.ipynb (outputs stripped). Run: python notebooks/build_attribution.py"""

from pathlib import Path

import nbformat as nbf

CELLS = [
    ("md", "# Input attribution\n\nWhich prompt tokens drive a prediction? One entry point, "
           "`mechinterp.attribution.attribute(model, prompt, target, method=...)`, nine methods, "
           "targets from a next-token logit to a generated continuation, faithfulness metrics. "
           "See `docs/howto/attribution.md` for the formulas."),
    ("code", "import warnings, torch\nimport mechinterp\nfrom mechinterp.attribution import (attribute, method_names, Contrast, Continuation,\n"
             "    Generate, aggregate, faithfulness, plot_comparison, merge_words, group_scores)\n"
             "torch.set_num_threads(1)\nwarnings.filterwarnings('ignore', category=DeprecationWarning)\nmethod_names()"),
    ("md", "## A model and a task with known ground truth\n\n`zoo:toy-lm` is trained on templated facts; "
           "the facts task says, per prompt, which position determines the answer (the country). "
           "(If the zoo model is not there yet, a small random model stands in and the numbers mean nothing.)"),
    ("code", "if 'toy-lm' in mechinterp.zoo.names():\n    model = mechinterp.load('zoo:toy-lm')\n"
             "    task = mechinterp.tasks.load('facts', model, n=8, seed=0)\n"
             "    prompt = task.clean_tokens[0, : int(task.lengths[0])]\n"
             "    target = Contrast(int(task.correct_tokens[0]), int(task.wrong_tokens[0]))\n"
             "    truth = task.ground_truth.positions[0]\n"
             "else:\n    from transformer_lens import HookedTransformer, HookedTransformerConfig\n"
             "    from mechinterp.zoo.tokenizer import word_tokenizer\n    import tempfile\n"
             "    tok = word_tokenizer([f'w{i}' for i in range(45)], tempfile.mkdtemp())\n"
             "    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=48,\n"
             "                                  act_fn='gelu', normalization_type='LN', seed=0, device='cpu')\n"
             "    model = HookedTransformer(cfg, tokenizer=tok).eval()\n"
             "    prompt, target, truth = 'w1 w2 w3 w4 w5', Contrast('w7', 'w8'), [3]\n"
             "print(model.to_str_tokens(prompt), 'ground truth positions:', truth)"),
    ("md", "## Integrated gradients, with its convergence delta"),
    ("code", "ig = attribute(model, prompt, target, method='ig', n_steps=64)\n"
             "print('relative completeness gap:', ig.metadata['relative_delta'])\nig.top_k(3)"),
    ("code", "ig"),
    ("md", "## Every method side by side"),
    ("code", "opts = {'kernel_shap': {'n_samples': 256}, 'lime': {'n_samples': 256}, 'integrated_gradients': {'n_steps': 32}}\n"
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


def build(path: Path = Path(__file__).with_name("attribution.ipynb")) -> Path:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src) for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, path)
    return path


if __name__ == "__main__":
    print(build())
