"""``mechinterp influence``: which training sequences made the model predict this?

With no options it runs the known-answer experiment (:mod:`mechinterp.influence.planted`): a
1-layer model is trained here (about 3 s) on 376 short fact sequences, 8 made-up facts
planted in 2 rows each, and every planted query is scored against the whole training set.
It prints each query's top helpful and harmful sequences and where the planted rows rank.

With ``--train FILE`` (one training text per line), ``--prompt`` and ``--target`` it scores
that training set on ``--model`` instead.
"""

from __future__ import annotations

import argparse
import math
import time

from mechinterp.cli.common import add_model_args, check_out, load_model, steps, write_json
from mechinterp.core.atomic import write_text

METHOD_CHOICES = ["ekfac", "kfac", "dot", "cosine"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("influence", help="training-data attribution (EK-FAC influence; planted-facts experiment by default)")
    add_model_args(parser, seed_help="seed of the planted model's data and training, the projection and the Fisher's labels")
    parser.set_defaults(batch_size=64)
    parser.add_argument("--train", default=None, help="text file, one training sequence per line (default: the planted-facts "
                                                        "experiment, with a model trained here; --model is used only with --train)")
    parser.add_argument("--prompt", default=None, help="query prompt (with --train)")
    parser.add_argument("--target", default=None, help="query target token, e.g. ' Paris' (with --train)")
    parser.add_argument("--method", default="ekfac", choices=METHOD_CHOICES, help="influence method")
    parser.add_argument("--top-k", type=int, default=3, help="helpful and harmful sequences listed per query")
    parser.add_argument("--queries", type=int, default=8, help="planted facts (and queries) in the default experiment")
    parser.add_argument("--steps", type=int, default=60, help="training steps of the planted model")
    parser.add_argument("--projection-dim", type=int, default=None,
                        help="random projection per matrix (default: none, exact, for the planted model; 1024 with --train)")
    parser.add_argument("--memory-budget", default="1GB", help="projected gradients kept in memory (the rest spills to disk)")
    parser.add_argument("--out", default="out/influence", help="output folder")
    parser.set_defaults(handler=run)


def _planted(args: argparse.Namespace) -> tuple:
    import torch

    from mechinterp.errors import MechinterpError
    from mechinterp.influence.planted import make_data, make_model, query_logprobs, train

    if args.queries < 1 or args.steps < 1:
        raise MechinterpError("--queries and --steps must be positive integers.")
    torch.manual_seed(args.seed)
    data = make_data(n_planted=args.queries, seed=args.seed)
    model = make_model(data.d_vocab, seed=args.seed)
    train(model, data.tokens, steps=args.steps)
    learned = query_logprobs(model, data)
    queries = [(torch.tensor(p), t) for p, t in data.queries]
    info = {"experiment": "planted facts", "n_train": len(data.tokens), "planted_rows": data.planted, "steps": args.steps,
            "query_logprob_mean": float(learned.mean())}
    return model, data.tokens, queries, data.planted, info


def run(args: argparse.Namespace) -> int:
    from mechinterp.errors import MechinterpError
    from mechinterp.influence import InfluenceIndex
    from mechinterp.viz import html_page

    start = time.perf_counter()
    folder = check_out(args.out)
    if args.top_k < 1:
        raise MechinterpError(f"--top-k must be a positive integer, got {args.top_k}.")
    planted = None
    progress = steps("influence", 2)
    if args.train is None:
        if args.prompt is not None or args.target is not None:
            raise MechinterpError("--prompt and --target need --train FILE (one training text per line).")
        with progress.step("training the planted-facts model", f"{args.steps} steps"):
            model, train, queries, planted, info = _planted(args)
        projection = args.projection_dim
        source = f"planted-facts model (1 layer, trained here, seed {args.seed})"
    else:
        if args.prompt is None or args.target is None:
            raise MechinterpError("--train needs a query: pass --prompt 'The capital of France is' --target ' Paris'.")
        from pathlib import Path

        lines = [line.rstrip("\n") for line in Path(args.train).read_text(encoding="utf-8").splitlines()]
        train = [line for line in lines if line.strip()]
        if not train:
            raise MechinterpError(f"--train {args.train} has no non-empty lines; write one training sequence per line.")
        with progress.step("loading the model", args.model):
            model = load_model(args)
        queries = [(args.prompt, args.target)]
        projection = args.projection_dim if args.projection_dim is not None else 1024
        info = {"experiment": "training file", "train_file": str(args.train), "n_train": len(train)}
        source = args.model
    with progress.step(f"{args.method} influence", f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}"):
        index = InfluenceIndex(model, args.method, projection_dim=projection, memory_budget=args.memory_budget,
                               batch_size=args.batch_size, seed=args.seed)
        result = index.fit(train).score(queries, top_k=args.top_k)
    result.save(folder / "influence.json")
    write_text(folder / "influence.html", html_page(f"influence ({args.method}): {source}", result.to_html()))
    summary: dict = {"model": source, "method": args.method, **info, "queries": result.queries}
    print(f"{source}: {args.method} influence of {len(index.train_)} training sequences on {len(queries)} "
          f"quer{'y' if len(queries) == 1 else 'ies'}, in {time.perf_counter() - start:.1f}s")
    for q, label in enumerate(result.queries):
        print(f"query {q}: {label}")
        for name, rows in (("helpful", result.helpful[q]), ("harmful", result.harmful[q])):
            for row in rows:
                mark = " *planted*" if planted is not None and row["index"] in planted[q] else ""
                print(f"  {name:<7} #{row['index']:<5} {row['score']:+.4g}  {' '.join(row['tokens'])}{mark}")
    if planted is not None:
        cutoff = math.ceil(len(index.train_) / 100)  # rows in the top 1%
        ranks = [[int(result.ranks(q)[i]) for i in planted[q]] for q in range(len(queries))]
        hits = sum(max(r) < cutoff for r in ranks)
        summary.update(planted_ranks=ranks, top_1pct_cutoff=cutoff, queries_with_all_planted_in_top_1pct=hits)
        print(f"planted rows in the top 1% (rank < {cutoff}) for {hits}/{len(queries)} queries; ranks: {ranks}")
    write_json(folder / "summary.json", summary)
    print(f"wrote {folder / 'influence.json'}, influence.html and summary.json")
    return 0
