"""``mechinterp steer``: contrastive steering vectors by layer, swept over scales, against a random control.

A task with two answer labels (``sentiment``: positive / negative) gives the two prompt sets:
at every layer the steering vector is the mean ``resid_post`` at the last token of the
train-split prompts labelled ``--target`` minus the mean over those labelled otherwise. The
held-out (test-split) prompts of the other label are then run with ``scale * vector`` added
at every position, and the sweep reports the fraction whose prediction between the two
labels flips to ``--target``, next to a random vector of the same norm (the control).
"""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args, check_out, load_model, load_task, steps, write_json
from mechinterp.core.atomic import write_text

#: this subcommand's default task: it needs a task with two answer labels, which the shared default (ioi) is not
TASK = "sentiment"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("steer", help="contrastive steering vectors: layer x scale sweep with a random-vector control")
    add_model_args(parser)
    parser.add_argument("--task", default=TASK, help="a task with two answer labels (see `mechinterp tasks`)")
    parser.add_argument("--target", default=None,
                        help="the label to steer towards (default: the label that sorts last, sentiment: positive)")
    parser.add_argument("--n", type=int, default=64, help="train-split prompts the vectors are built from")
    parser.add_argument("--n-test", type=int, default=64, help="test-split prompts drawn (those of the other label are steered)")
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    parser.add_argument("--scales", default="1,2,4", help="comma-separated multipliers of the vector")
    parser.add_argument("--positions", default="all", choices=["all", "last"], help="where the vector is added")
    parser.add_argument("--n-random", type=int, default=1, help="random vectors of the same norm per layer (the control)")
    parser.add_argument("--out", default="out/steer", help="output folder")
    parser.set_defaults(handler=run)


def _labels(task) -> list[str]:
    return sorted(set(task.correct_answers))


def run(args: argparse.Namespace) -> int:
    from mechinterp.core.cache import SharedCache
    from mechinterp.core.sites import resolve
    from mechinterp.errors import MechinterpError
    from mechinterp.lens import contrastive_vector, steered_generate, steering_sweep
    from mechinterp.viz import html_page

    start = time.perf_counter()
    folder = check_out(args.out)
    try:
        scales = [float(x) for x in args.scales.split(",") if x.strip()]
    except ValueError:
        raise MechinterpError(f"--scales must be comma-separated numbers, got {args.scales!r}.") from None
    if not scales:
        raise MechinterpError("--scales is empty; give at least one multiplier, e.g. --scales 1,2.")
    progress = steps("steer", 2)
    with progress.step("loading and building the vectors", args.model):
        model = load_model(args)
        train = load_task(args.task, model, n=args.n, seed=args.seed, split="train")
        labels = _labels(train)
        if len(labels) != 2:
            raise MechinterpError(f"--task {args.task} has {len(labels)} answer labels ({labels[:5]}...); steer needs a task "
                                  "with two (e.g. --task sentiment).")
        target = args.target if args.target is not None else labels[-1]
        if target not in labels:
            raise MechinterpError(f"--target {target!r} is not a label of --task {args.task}; its labels: {labels}.")
        other = labels[0] if target == labels[1] else labels[1]
        layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(model.cfg.n_layers))
        bad = [l for l in layers if not 0 <= l < model.cfg.n_layers]
        if bad:
            raise MechinterpError(f"--layers {bad} outside [0, {model.cfg.n_layers}).")
        pos = [p for p, a in zip(train.clean_prompts, train.correct_answers) if a == target]
        neg = [p for p, a in zip(train.clean_prompts, train.correct_answers) if a == other]
        hooks = [resolve(model, "resid_post", l)[0] for l in layers]
        caches = []
        for prompts in (pos, neg):  # one cached pass per prompt set serves every layer's vector
            cache = SharedCache(model, prompts, positions="last", batch_size=args.batch_size, progress=False)
            cache.fetch(hooks)
            caches.append(cache)
        vectors = {l: contrastive_vector(model, caches[0], caches[1], l) for l in layers}
        test = load_task(args.task, model, n=args.n_test, seed=args.seed, split="test")
        held_out = [p for p, a in zip(test.clean_prompts, test.correct_answers) if a == other]
        if not held_out:
            raise MechinterpError(f"No test-split prompt of --task {args.task} is labelled {other!r}; raise --n-test.")
    with progress.step("steering sweep", f"{len(held_out)} prompts x {len(layers)} layers x {len(scales)} scales"):
        sweep = steering_sweep(model, held_out, vectors, scales, target=target, other=other, positions=args.positions,
                               n_random=args.n_random, seed=args.seed, batch_size=args.batch_size)
    layer, scale, success = sweep.best()
    i, j = sweep.layers.index(layer), sweep.scales.index(scale)
    example = steered_generate(model, held_out[0], vectors[layer], scale=scale, max_new_tokens=1)
    sweep.save(folder / "sweep.json")
    vectors[layer].save(folder / "vector.json")
    write_text(folder / "sweep.html", html_page(f"steering towards {target!r}: {args.task} on {args.model}",
                                                sweep.to_html() + vectors[layer].to_html()))
    summary = {"model": args.model, "task": args.task, "target": target, "other": other, "n_positive": len(pos),
               "n_negative": len(neg), "n_steered": len(held_out), "baseline_success": sweep.baseline_success,
               "best_layer": layer, "best_scale": scale, "best_success": success,
               "random_success_at_best": float(sweep.random_success[i, j]), "vector_norm": vectors[layer].norm,
               "example_prompt": held_out[0], "example_steered": example}
    write_json(folder / "summary.json", summary)
    print(f"{args.model}: steering {len(held_out)} held-out {other!r} prompts of {args.task} towards {target!r} "
          f"(vectors from {len(pos)} + {len(neg)} prompts), in {time.perf_counter() - start:.1f}s")
    print(f"  unsteered: {sweep.baseline_success:.0%} already read as {target!r}")
    for li, l in enumerate(sweep.layers):
        cells = "  ".join(f"x{s:g} {float(sweep.success[li, sj]):.0%} (random {float(sweep.random_success[li, sj]):.0%})"
                          for sj, s in enumerate(sweep.scales))
        print(f"  layer {l:>2}: {cells}")
    print(f"best: layer {layer}, scale {scale:g}: {success:.0%} flipped; a random vector of the same norm "
          f"{summary['random_success_at_best']:.0%}")
    print(f"wrote {folder / 'sweep.json'}, vector.json, sweep.html and summary.json")
    return 0
