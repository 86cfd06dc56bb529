"""``mechinterp sae``: train a sparse autoencoder on one site from the shared cache, evaluate it, save it.

With no options: a TopK SAE (k=8, 4x d_model latents) on ``resid_post`` of the middle layer of
``zoo:toy-lm``, trained on the train prompts of four language tasks and evaluated on their
held-out prompts (L0, explained variance, CE loss recovered, KL, dead latents). Position 0 (BOS,
or a model's first-token attention sink) and tokens whose norm exceeds 10x the median
(massive activations) are left out of training and evaluation and pass through the splice
(``--keep-first``, ``--massive-ratio 0`` to keep them). The SAE is
written in the SAELens format (``cfg.json`` + ``sae_weights.safetensors``) under ``out/sae``,
so ``mechinterp.dictionary.load_sae`` or ``sae_lens.SAE.load_from_disk`` reads it.
"""

from __future__ import annotations

import argparse
import time

from mechinterp.cli.common import add_model_args, check_out, load_model, load_task, steps, write_json
from mechinterp.core.atomic import write_text

#: the tasks whose prompts the default SAE is trained (train split) and evaluated (test split) on
DEFAULT_TASKS = "ioi,facts,sentiment,greater-than"


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sae", help="train a sparse autoencoder on a site, evaluate it, save it (SAELens format)")
    add_model_args(parser, seed_help="seed of the prompt draw, the SAE's initialisation and the shuffling")
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated tasks whose prompts are the data")
    parser.add_argument("--n", type=int, default=48, help="train prompts per task (a third as many held out)")
    parser.add_argument("--site", default="resid_post", help="site to train on (resid_post, mlp_out, z, ...)")
    parser.add_argument("--layer", type=int, default=None, help="layer (default: the middle one, n_layers // 2)")
    parser.add_argument("--head", type=int, default=None, help="for a per-head site (z): one head (default: all heads)")
    parser.add_argument("--architecture", default="topk", choices=["topk", "batchtopk", "standard", "jumprelu"],
                        help="SAE kind (standard = ReLU + L1)")
    parser.add_argument("--k", type=int, default=8, help="active latents per token (topk, batchtopk)")
    parser.add_argument("--l1", type=float, default=5.0, help="L1 coefficient (standard)")
    parser.add_argument("--expansion-factor", type=int, default=4, help="latents per input dimension")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the cached activations")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--sae-batch-size", type=int, default=256, help="tokens per training step")
    parser.add_argument("--resample-every", type=int, default=None, help="resample dead latents every N steps (off)")
    parser.add_argument("--keep-first", action="store_true",
                        help="train on position 0 too (default: left out, it is BOS or the first-token attention sink)")
    parser.add_argument("--massive-ratio", type=float, default=10.0,
                        help="leave out tokens whose norm exceeds this multiple of the median (massive activations; "
                             "0 keeps every token)")
    parser.add_argument("--out", default="out/sae", help="output folder (the SAELens checkpoint and the reports)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import mechinterp
    from mechinterp import dictionary
    from mechinterp.core.tokens import Tokenized
    from mechinterp.errors import MechinterpError
    from mechinterp.viz import html_page

    start = time.perf_counter()
    folder = check_out(args.out)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not names:
        raise MechinterpError("--tasks is empty; pass task names, e.g. --tasks ioi,facts (see `mechinterp tasks`).")
    progress = steps("sae", 3)
    with progress.step("loading and caching activations", args.model):
        model = load_model(args)
        layer = model.cfg.n_layers // 2 if args.layer is None else args.layer
        if not 0 <= layer < model.cfg.n_layers:
            raise MechinterpError(f"--layer {layer} is out of range; {args.model} has layers 0..{model.cfg.n_layers - 1}.")

        def prompts(n: int, split: str) -> Tokenized:
            tasks = [load_task(name, model, n=n, split=split, seed=args.seed) for name in names]
            width = max(t.clean_tokens.shape[1] for t in tasks)
            tokens = torch.cat([torch.nn.functional.pad(t.clean_tokens, (0, width - t.clean_tokens.shape[1])) for t in tasks])
            lengths = torch.cat([t.lengths for t in tasks])
            return Tokenized(tokens, (torch.arange(width)[None] < lengths[:, None]).long(), lengths, "right")

        train, test = prompts(args.n, "train"), prompts(max(1, args.n // 3), "test")
        cache = mechinterp.SharedCache(model, train, batch_size=args.batch_size, progress=False)
    site = (args.site, layer)
    skip_first = not args.keep_first
    if args.massive_ratio < 0:
        raise MechinterpError(f"--massive-ratio must be >= 0 (0 keeps every token), got {args.massive_ratio}.")
    max_norm, n_massive = (dictionary.massive_norm(cache, site, args.massive_ratio, skip_first=skip_first)
                           if args.massive_ratio > 0 else (None, 0))
    with progress.step("training", f"{args.architecture} on {args.site} layer {layer}, {int(train.lengths.sum())} tokens"
                       f" ({'position 0 left out, ' if skip_first else ''}{n_massive} massive activations left out)"):
        sae = dictionary.train_sae(
            cache, site, architecture=args.architecture, k=args.k, l1_coefficient=args.l1,
            expansion_factor=args.expansion_factor, n_epochs=args.epochs, lr=args.lr, batch_size=args.sae_batch_size,
            resample_every=args.resample_every, seed=args.seed, device=str(model.cfg.device), head=args.head,
            skip_first=skip_first, max_norm=max_norm,
        )
    with progress.step("evaluating", f"{len(test)} held-out prompts"):
        result = dictionary.evaluate_sae(model, sae, test, batch_size=args.batch_size, skip_first=skip_first)
    dictionary.save_sae(sae, folder)
    sae.training_log.save(folder / "training.json")
    result.save(folder / "evaluation.json")
    write_text(folder / "evaluation.html", html_page(f"SAE on {sae.hook_name}", result.to_html() + sae.training_log.to_html()))
    summary = {"model": args.model, "site": sae.hook_name, "head": args.head, "architecture": args.architecture,
               "d_in": sae.d_in, "d_sae": sae.d_sae, "train_tokens": sae.training_log.n_tokens // args.epochs,
               "l0": result.l0, "explained_variance": result.explained_variance,
               "ce_loss_recovered": result.ce_loss_recovered, "kl": result.kl_spliced, "dead_fraction": result.dead_fraction,
               "tokens_per_second": sae.training_log.tokens_per_second, "skip_first": skip_first,
               "max_input_norm": max_norm, "massive_tokens_left_out": n_massive}
    write_json(folder / "summary.json", summary)
    print(f"{args.model}: {args.architecture} SAE ({sae.d_sae} latents) on {sae.hook_name}"
          f"{'' if args.head is None else f' head {args.head}'} in {time.perf_counter() - start:.1f}s")
    print(f"  held out ({result.n_tokens} tokens): L0 {result.l0:.2f}   explained variance {result.explained_variance:.3f}"
          f"   CE loss recovered {result.ce_loss_recovered:.4f}   KL {result.kl_spliced:.4f}   dead {result.dead_fraction:.1%}")
    print(f"wrote {folder} (SAELens checkpoint: cfg.json, sae_weights.safetensors), training.json, evaluation.json, "
          "evaluation.html and summary.json")
    return 0
