"""Build notebooks/influence.ipynb (outputs stripped): training-data attribution with known answers.

Run:  .venv/bin/python notebooks/build_influence.py            # writes the notebook
      .venv/bin/python notebooks/build_influence.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("influence.ipynb")

CELLS = [
    ("md", """# Which training sequences made the model predict this?

Influence methods answer it for a *query* (a prompt and a target) by scoring every training
sequence: how much would training a little more on it move the query's log-probability?
Nobody can check that on a pretrained LLM (no training data, no budget to retrain). Here we can:
a small model is trained in a few seconds on data we generate, with **8 made-up facts** ("the
capital of Zorbia is Quux") each seen in only **2** of 376 training rows. Those rows are, by
construction, the only data that teach each query's answer; a good method ranks them first.

Methods: EK-FAC influence functions (Grosse et al. 2023), K-FAC, TracIn over checkpoints, and the
gradient dot product / cosine. See `docs/howto/influence.md` for what each computes and how
each is checked (EK-FAC equals kronfluence; TracIn equals captum's `TracInCP`)."""),
    ("code", """import torch

from mechinterp.influence import InfluenceIndex, tracin
from mechinterp.influence.planted import make_data, make_model, query_logprobs, train

torch.set_num_threads(1)
data = make_data()                      # bos filler subject relation object, 376 rows
model = make_model(data.d_vocab)        # 1 layer, d_model 32, LayerNorm, 2 heads
checkpoints = train(model, data.tokens, steps=60, keep=3)
queries = [(torch.tensor(p), t) for p, t in data.queries]
print(len(data.tokens), "training rows; query log-probs:", [round(x, 2) for x in query_logprobs(model, data).tolist()])"""),
    ("md", """## EK-FAC influence

`InfluenceIndex` computes each training row's gradient once (`vmap(grad)`), fits the
eigenvalue-corrected Kronecker-factored Gauss–Newton Hessian, and scores any number of queries.
`projection_dim=None` keeps gradients exact (a tiny model); on a large model the default random
projection (1024 entries per matrix) bounds memory."""),
    ("code", """index = InfluenceIndex(model, "ekfac", projection_dim=None, batch_size=64).fit(data.tokens)
result = index.score(queries, top_k=3)
for q in range(len(queries)):
    ranks = [int(result.ranks(q)[i]) for i in data.planted[q]]
    print(f"query {q}: planted rows {data.planted[q]} rank {ranks}; top 3 = {result.top(q, 3)}")"""),
    ("md", """Each listed row also carries per-token influence (which next-token loss inside it matters):
for a planted row it sits on the made-up object, the token the query asks for. The result
renders as an offline HTML page (`result.save("influence.html")`) and plots its top rows."""),
    ("code", """row = result.helpful[0][0]
list(zip(row["tokens"], [round(s, 1) for s in row["token_scores"]]))"""),
    ("code", """result.plot(query=0);"""),
    ("md", """## All methods, same question

Rank of the *worse* planted row per query (0 = most helpful of 376); the top 1% is ranks 0-3."""),
    ("code", """def worst_ranks(res):
    return [max(int(res.ranks(q)[i]) for i in data.planted[q]) for q in range(len(queries))]

table = {"ekfac": worst_ranks(result)}
for method in ("kfac", "cosine", "dot"):
    table[method] = worst_ranks(InfluenceIndex(model, method, projection_dim=None, batch_size=64).fit(data.tokens)
                                .score(queries, per_token=False))
table["tracin"] = worst_ranks(tracin(model, checkpoints, data.tokens, queries, projection_dim=None, batch_size=64, per_token=False))
for method, ranks in table.items():
    print(f"{method:>7}: {ranks}  in top 1%: {sum(r < 4 for r in ranks)}/{len(ranks)}")"""),
    ("md", """## Ground truth by retraining

Influence is a prediction about retraining. Retrain the same model (same seed) without the
planted rows of the first four facts: those queries' log-probabilities should collapse, and the
others stay learned."""),
    ("code", """drop = {i for q in range(4) for i in data.planted[q]}
keep = torch.tensor([i for i in range(len(data.tokens)) if i not in drop])
retrained = make_model(data.d_vocab)
train(retrained, data.tokens[keep], steps=60)
before, after = query_logprobs(model, data), query_logprobs(retrained, data)
for q in range(len(queries)):
    print(f"query {q}: log p {before[q]:6.2f} -> {after[q]:6.2f}" + ("   (planted rows removed)" if q < 4 else ""))"""),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
