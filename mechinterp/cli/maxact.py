"""``mechinterp maxact``: the dataset contexts that most activate a target, and an input optimised for it.

The default target is the task's concept direction (``sentiment``, the default: polarity;
``ioi``: which name comes first): the mass-mean difference of ``--site`` at ``--layer`` (the last
by default) between the train-split prompts of the two label values, read at each prompt's
last token. The test-split prompts are scanned at every token for the ``--k`` largest
projections (each context saved with its per-token activations), and a gradient-guided
coordinate search looks for the ``--length`` last tokens that push the projection furthest
after the best context's other tokens (or ``--prefix``).
Other targets: ``--target neuron --index I``, ``--target head --index H`` (the head's
output norm), ``--target dimension --index I``.
"""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args, check_out, load_model, load_task, steps, write_json
from mechinterp.core.atomic import write_text

#: this subcommand's default task: its concept (polarity) is read at every token after the adjective, so the scan over
#: all positions finds it; the shared default's (ioi: which name comes first) exists only at the last token
TASK = "sentiment"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("maxact", help="max-activating dataset examples and an optimised input for a direction, "
                                           "neuron, head or dimension")
    add_model_args(parser, seed_help="seed of the task's prompt draw and of the input search")
    parser.add_argument("--task", default=TASK, help="task whose prompts are scanned and whose concept label gives the "
                                                      "--target probe direction (see `mechinterp tasks`)")
    parser.add_argument("--n", type=int, default=64, help="prompts of --task scanned (test split; as many train-split "
                                                           "prompts build the direction)")
    parser.add_argument("--target", default="probe", choices=["probe", "neuron", "head", "dimension"],
                        help="what to maximise: the task's concept direction, an MLP neuron, a head's output norm, "
                             "or one coordinate of --site")
    parser.add_argument("--site", default="resid_post", help="site of --target probe / dimension")
    parser.add_argument("--layer", type=int, default=-1, help="layer (negative: from the last)")
    parser.add_argument("--index", type=int, default=0, help="neuron, head or coordinate index")
    parser.add_argument("--k", type=int, default=10, help="top examples kept")
    parser.add_argument("--minimise", action="store_true", help="the lowest activations instead")
    parser.add_argument("--length", type=int, default=1, help="tokens searched by the input optimisation (the last ones "
                                                                "of the input, where the target is read)")
    parser.add_argument("--prefix", default=None, help="fixed text before the searched tokens (default: the best "
                                                       "dataset context without its last --length tokens)")
    parser.add_argument("--steps", type=int, default=20, help="input-optimisation steps (0: no optimisation)")
    parser.add_argument("--out", default="out/maxact", help="output folder")
    parser.set_defaults(handler=run)


def concept_direction(model, task, label: str, site: str, layer: int, batch_size: int):
    """Mean of ``site`` at the last token over prompts whose ``label`` is the larger value, minus the rest."""
    import torch

    from mechinterp.core.cache import SharedCache
    from mechinterp.core.sites import resolve
    from mechinterp.errors import MechinterpError

    values = list(task.ground_truth.labels[label])
    kinds = sorted(set(values), key=str)
    if len(kinds) != 2:
        raise MechinterpError(f"The task's label {label!r} has {len(kinds)} values; --target probe needs two. "
                              "Use --target neuron, head or dimension.")
    hook = resolve(model, site, layer)[0]
    acts = SharedCache(model, task.clean_prompts, positions="last", batch_size=batch_size, progress=False)[hook].float()
    if acts.ndim != 2:
        raise MechinterpError(f"--site {site} is not residual-shaped ([batch, d]); use resid_post, attn_out or mlp_out.")
    high = torch.tensor([v == kinds[1] for v in values])
    return acts[high].mean(0) - acts[~high].mean(0), f"{label} = {kinds[1]} - {kinds[0]}"


def _join(tokens: list[str]) -> str:
    """A context's text: sub-word tokens carry their own spaces, word-level ones do not."""
    return "".join(tokens) if any(t.startswith(" ") for t in tokens) else " ".join(tokens)


def run(args: argparse.Namespace) -> int:
    from mechinterp import features
    from mechinterp.errors import MechinterpError
    from mechinterp.report.sections import PROBE_LABELS
    from mechinterp.viz import html_page

    start = time.perf_counter()
    folder = check_out(args.out)
    if args.steps < 0:
        raise MechinterpError(f"--steps must be >= 0, got {args.steps}.")
    if args.target == "probe" and args.task not in PROBE_LABELS:
        raise MechinterpError(f"--task {args.task} has no concept label (tasks with one: {sorted(PROBE_LABELS)}); "
                              "use --target neuron, head or dimension.")
    progress = steps("maxact", 3 if args.steps else 2)
    with progress.step("loading", args.model):
        model = load_model(args)
        n_layers = model.cfg.n_layers
        layer = args.layer + n_layers if args.layer < 0 else args.layer
        if not 0 <= layer < n_layers:
            raise MechinterpError(f"--layer {args.layer} is outside the model's {n_layers} layers.")
        test = load_task(args.task, model, n=args.n, seed=args.seed, split="test")
        if args.target == "probe":
            train = load_task(args.task, model, n=args.n, seed=args.seed, split="train")
            vector, what = concept_direction(model, train, PROBE_LABELS[args.task], args.site, layer, args.batch_size)
            target = features.direction(model, args.site, layer, vector, what)
            write_json(folder / "direction.json", {"hook": target.hook, "label": what, "vector": vector.tolist()})
        elif args.target == "neuron":
            target = features.neuron(model, layer, args.index)
        elif args.target == "head":
            target = features.head_norm(model, layer, args.index)
        else:
            target = features.dimension(model, args.site, layer, args.index)
    with progress.step("scanning the dataset", f"{len(test)} prompts"):
        top = features.max_activating_examples(model, test.clean_prompts, target, k=args.k, batch_size=args.batch_size,
                                               minimise=args.minimise)
    top.save(folder / "examples.json")
    body = top.to_html()
    summary: dict = {"model": args.model, "task": args.task, "target": target.label, "hook": target.hook,
                     "n_prompts": top.n_prompts, "n_tokens": top.n_tokens, "minimise": args.minimise,
                     "examples": [{"value": float(v), "prompt_index": int(i), "position": int(p), "context": _join(t)}
                                  for v, i, p, t in zip(top.values, top.prompt_index, top.position, top.tokens)]}
    if args.target == "probe":
        labels = test.ground_truth.labels[PROBE_LABELS[args.task]]
        summary["example_labels"] = [labels[int(i)] for i in top.prompt_index]
    if args.steps:
        if args.minimise:
            raise MechinterpError("--minimise has no input optimisation; pass --steps 0 with it.")
        with progress.step("optimising an input", f"{args.length} tokens, {args.steps} steps"):
            prefix = args.prefix
            if prefix is None:  # the best context, its last tokens searched
                kept = top.tokens[0][1 if model.cfg.default_prepend_bos else 0: -args.length]
                prefix = _join(kept).strip()
            best = features.optimise_input(model, target, length=args.length, prefix=prefix, steps=args.steps, seed=args.seed,
                                           reference=top)
        best.save(folder / "optimised.json")
        body += best.to_html()
        summary["optimised"] = {"prefix": prefix, "tokens": best.tokens, "value": best.value,
                                "best_dataset_value": best.best_dataset_value}
    write_text(folder / "maxact.html", html_page(f"max-activating examples: {target.label} on {args.model}", body))
    write_json(folder / "summary.json", summary)
    print(f"{args.model}: {target.label}, {top.n_tokens} tokens of {top.n_prompts} prompts scanned in "
          f"{time.perf_counter() - start:.1f}s")
    for row in summary["examples"][:5]:
        print(f"  {row['value']:+9.3f}  ...{row['context'][-60:]!r}")
    if args.steps:
        print(f"optimised input {_join(summary['optimised']['tokens'])!r}: {best.value:.3f} "
              f"(best dataset example {float(top.values[0]):.3f})")
    extra = (", optimised.json" if args.steps else "") + (", direction.json" if args.target == "probe" else "")
    print(f"wrote {folder / 'examples.json'}{extra}, maxact.html and summary.json")
    return 0
