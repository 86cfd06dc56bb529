"""``mechinterp lens``: logit lens and direct logit attribution on a task's prompts, from one cached pass.

Every layer's residual at each prompt's last token is read through the final norm and the
unembedding (top tokens, the correct answer's probability and rank, KL to the model's own
output), and the logit difference ``logit(correct) - logit(wrong)`` is split into each
head's, MLP's and embedding's direct contribution (final norm scale frozen at the clean run;
the parts sum to the logit difference). With ``--tuned-steps N`` a tuned lens is also fitted
on the task's train split and compared with the logit lens on the prompts read.
"""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args, add_task_arg, check_out, load_model, load_task, steps, write_json
from mechinterp.core.atomic import write_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lens", help="logit lens (and tuned lens) by layer, and direct logit attribution by component")
    add_model_args(parser)
    add_task_arg(parser, " whose prompts are read (answers: its correct answers; DLA: correct - wrong)")
    parser.add_argument("--n", type=int, default=64, help="prompts of --task (test split)")
    parser.add_argument("--site", default="resid_post", choices=["resid_pre", "resid_mid", "resid_post"], help="residual read per layer")
    parser.add_argument("--k", type=int, default=5, help="top tokens kept per layer")
    parser.add_argument("--neurons", action="store_true", help="split each MLP into its neurons in DLA")
    parser.add_argument("--tuned-steps", type=int, default=0, help="fit a tuned lens for this many steps on the task's "
                                                                     "train split and compare it with the logit lens (0: off)")
    parser.add_argument("--out", default="out/lens", help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mechinterp.core.cache import SharedCache
    from mechinterp.errors import MechinterpError
    from mechinterp.lens import TunedLens, check_exact, compare_lenses, direct_logit_attribution, dla_sites, logit_lens, residual_rows
    from mechinterp.viz import html_page

    start = time.perf_counter()
    folder = check_out(args.out)
    if args.tuned_steps < 0:
        raise MechinterpError(f"--tuned-steps must be >= 0, got {args.tuned_steps}.")
    progress = steps("lens", 3 if args.tuned_steps else 2)
    with progress.step("loading and caching activations", args.model):
        model = load_model(args)
        task = load_task(args.task, model, n=args.n, seed=args.seed, split="test")
        cache = SharedCache(model, task.clean_prompts, positions="last", batch_size=args.batch_size, progress=False)
        cache.fetch(list(dict.fromkeys([h for _, h in residual_rows(model, args.site)] + dla_sites(model, args.neurons))))
    with progress.step("logit lens and DLA", f"{len(task)} prompts"):
        lens = logit_lens(model, cache, answers=task.correct_answers, site=args.site, k=args.k)
        dla = direct_logit_attribution(model, cache, task.correct_answers, wrong=task.wrong_answers, neurons=args.neurons)
        gap = check_exact(dla)
    lens.save(folder / "lens.json")
    dla.save(folder / "dla.json")
    body = lens.to_html() + dla.to_html()
    summary: dict = {
        "model": args.model, "task": args.task, "n": len(task), "site": args.site,
        "rows": lens.rows,
        "mean_answer_prob": [float(x) for x in lens.mean_answer_prob()],
        "mean_answer_rank": [float(x) for x in lens.answer_ranks.float().mean(1)],
        "mean_kl": [float(x) for x in lens.mean_kl()],
        "dla_target": dla.target_label,
        "mean_target": float(dla.target.mean()),
        "dla_sum_gap": gap,
        "dla_top": [[name, value] for name, value in dla.top_k(10)],
    }
    if args.tuned_steps:
        with progress.step("tuned lens", f"{args.tuned_steps} steps"):
            train = load_task(args.task, model, n=max(args.n, 32), seed=args.seed, split="train")
            tuned = TunedLens(site=args.site, steps=args.tuned_steps, seed=args.seed).fit(model, train.clean_prompts)
            cmp = compare_lenses(model, task.clean_prompts, {"logit": None, "tuned": tuned})
        tuned.save(folder / "tuned_lens.safetensors")
        cmp.save(folder / "lens_comparison.json")
        body += cmp.to_html()
        summary["tuned_kl"] = {name: [float(x) for x in kl] for name, kl in cmp.kl.items()}
    write_text(folder / "lens.html", html_page(f"logit lens and DLA: {args.task} on {args.model}", body))
    write_json(folder / "summary.json", summary)
    print(f"{args.model}: {len(task)} prompts of {args.task}, {len(lens.rows)} rows, in {time.perf_counter() - start:.1f}s")
    for row, p, r, kl in zip(lens.rows, summary["mean_answer_prob"], summary["mean_answer_rank"], summary["mean_kl"]):
        print(f"  {row:<14} p(correct) {p:.3f}  rank {r:6.1f}  KL to final {kl:.3f}")
    print(f"DLA of {dla.target_label} (mean {summary['mean_target']:.3f}; parts sum to it within {gap:.1e}); top components:")
    for name, value in summary["dla_top"][:5]:
        print(f"  {name:<14} {value:+.3f}")
    extra = ", tuned_lens.safetensors, lens_comparison.json" if args.tuned_steps else ""
    print(f"wrote {folder / 'lens.json'}, dla.json, lens.html{extra} and summary.json")
    return 0
