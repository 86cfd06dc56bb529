"""Benchmark: logit lens + direct logit attribution over a prompt set, against one cached forward
pass and against TransformerLens 3.9's own route (``run_with_cache`` per batch, then
``accumulated_resid`` for the lens and ``stack_head_results`` / ``decompose_resid`` /
``logit_attrs`` for DLA), in one run on the same model and prompts.

Run:  .venv/bin/python benchmarks/lens_dla.py [--model zoo:toy-lm] [--n 1000] [--device cuda]
Prints one table; copy it into benchmarks/results/lens.md.

What is timed: one warm-up of each route, then ``--repeats`` rounds; each round runs every
route once, in an order rotated from round to round (interleaved, so a burst of load on the
shared machine hits all routes alike). Reported: the median wall and process-CPU seconds of
each route, and the median over rounds of each round's ratio to that round's cached pass.

* ``forward``: the model over every batch (``model(tokens)``), nothing kept: the floor;
* ``cached pass``: one :class:`SharedCache` pass collecting every site the lens and DLA read
  (last position of each prompt);
* ``ours``: a fresh cache pass plus :func:`logit_lens` and :func:`direct_logit_attribution`
  on it (the bar: at most 1.2x ``cached pass``);
* ``TL route``: per batch ``run_with_cache`` (every hook), the per-layer residuals from
  ``accumulated_resid`` through ``ln_final`` and ``unembed`` at each prompt's last token
  (top-k, answer probability, KL to the final layer), and per-head / per-MLP DLA through
  ``stack_head_results`` + ``decompose_resid`` + ``logit_attrs``.

Both routes compute the same numbers; the script checks that the per-head DLA agrees to 1e-3.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _interleaved(routes: dict, device: str, repeats: int) -> tuple[dict, dict, dict]:
    """Per route: wall seconds, process-CPU seconds (lists over rounds) and the last output."""
    wall = {k: [] for k in routes}
    cpu = {k: [] for k in routes}
    out = {k: fn() for k, fn in routes.items()}  # warm-up
    names = list(routes)
    for r in range(repeats):
        for k in names[r % len(names):] + names[: r % len(names)]:
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            out[k] = routes[k]()
            _sync(device)
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return wall, cpu, out


def prompts_for(model, n: int) -> tuple[list[str], list[str]]:
    import mechinterp

    tasks = ["ioi", "facts", "sentiment", "greater-than"]
    prompts, answers = [], []
    for name in tasks:
        task = mechinterp.tasks.load(name, model, n=n // len(tasks) + 1, split="test")
        prompts += task.clean_prompts
        answers += task.correct_answers
    return prompts[:n], answers[:n]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="zoo:toy-lm")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip-tl", action="store_true", help="leave out TL's route (slow on real models)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import mechinterp
    from mechinterp.lens import answer_lens, direct_logit_attribution, dla_sites, logit_lens, residual_rows

    model = mechinterp.load(args.model, device=args.device)
    prompts, answers = prompts_for(model, args.n)
    ids = mechinterp.answer_tokens(model, answers)
    batch = mechinterp.tokenize(model, prompts)
    bs, dev = args.batch_size, args.device
    sites = list(dict.fromkeys([h for _, h in residual_rows(model, "resid_post")] + dla_sites(model)))

    def forward():
        with torch.inference_mode():
            for s in range(0, len(batch), bs):
                width = int(batch.lengths[s : s + bs].max())
                model(batch.tokens[s : s + bs, :width].to(dev))

    def cached_pass():
        cache = mechinterp.SharedCache(model, batch, positions="last", batch_size=bs, progress=False)
        cache.fetch(sites)
        return cache

    def ours():
        cache = cached_pass()
        lens = logit_lens(model, cache, answers=ids)
        dla = direct_logit_attribution(model, cache, ids)
        return lens, dla

    def ours_answers():  # the answer lens: the answer's logit per layer, no vocabulary decode
        cache = cached_pass()
        return answer_lens(model, cache, ids), direct_logit_attribution(model, cache, ids)

    built = cached_pass()

    def increment():  # the lens and DLA alone, on a cache already built: the cost they add to the pass
        return logit_lens(model, built, answers=ids), direct_logit_attribution(model, built, ids)

    def tl_route():
        heads, lens_kl = [], []
        with torch.inference_mode():
            for s in range(0, len(batch), bs):
                width = int(batch.lengths[s : s + bs].max())
                tokens = batch.tokens[s : s + bs, :width].to(dev)
                last = batch.last_pos[s : s + bs].to(dev)
                rows = torch.arange(tokens.shape[0], device=dev)
                _, cache = model.run_with_cache(tokens)
                resid = cache.accumulated_resid(layer=-1, incl_mid=False)[1:]  # resid_post per layer
                lp = model.unembed(model.ln_final(resid[:, rows, last][:, :, None]))[:, :, 0].log_softmax(-1)
                final = lp[-1]
                lens_kl.append((final.exp() * (final - lp)).sum(-1))
                lp.topk(5, dim=-1)
                lp[:, rows, ids[s : s + bs].to(dev)].exp()
                stack = cache.stack_head_results(layer=-1, pos_slice=None)[:, rows, last]
                scale = cache["ln_final.hook_scale"][rows, last]
                dirs = model.tokens_to_residual_directions(ids[s : s + bs].to(dev))
                centred = stack - stack.mean(-1, keepdim=True) if model.cfg.normalization_type in ("LN", "LNPre") else stack
                heads.append(((centred / scale) * dirs).sum(-1))
                mlp = cache.decompose_resid(layer=-1, mode="mlp")[:, rows, last]
                centred = mlp - mlp.mean(-1, keepdim=True) if model.cfg.normalization_type in ("LN", "LNPre") else mlp
                ((centred / scale) * dirs).sum(-1)
        return torch.cat(heads, 1), torch.cat(lens_kl, 1)

    routes = {"forward (nothing kept)": forward, "one cached pass (lens + DLA sites)": cached_pass,
              "ours: cached pass + logit lens + DLA": ours,
              "ours: cached pass + answer lens + DLA": ours_answers,
              "logit lens + DLA alone (on a built cache)": increment, "TL 3.9 route": tl_route}
    if args.skip_tl:
        del routes["TL 3.9 route"]
    wall, cpu, out = _interleaved(routes, dev, args.repeats)
    lens, dla = out["ours: cached pass + logit lens + DLA"]
    answers_res, _ = out["ours: cached pass + answer lens + DLA"]
    base = "one cached pass (lens + DLA sites)"
    med = statistics.median
    device_name = torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu"
    print(f"model {args.model}, {len(prompts)} prompts, batch {bs}, device {dev} ({device_name}), torch threads "
          f"{torch.get_num_threads()}, {args.repeats} interleaved rounds after a warm-up")
    print("| route | wall s (median) | x cached pass (wall, median of rounds) | CPU s (median) | x cached pass (CPU, median of rounds) | wall s range |")
    print("|---|---|---|---|---|---|")
    for name in routes:
        rw = med([a / b for a, b in zip(wall[name], wall[base])])
        rc = med([a / b for a, b in zip(cpu[name], cpu[base])])
        print(f"| {name} | {med(wall[name]):.3f} | {rw:.3f} | {med(cpu[name]):.3f} | {rc:.3f} | "
              f"{min(wall[name]):.3f}-{max(wall[name]):.3f} |")
    inc = "logit lens + DLA alone (on a built cache)"
    print(f"cached pass + increment: 1 + {med(cpu[inc]):.3f} / {med(cpu[base]):.3f} = {1 + med(cpu[inc]) / med(cpu[base]):.3f}x "
          f"(CPU), 1 + {med(wall[inc]):.3f} / {med(wall[base]):.3f} = {1 + med(wall[inc]) / med(wall[base]):.3f}x (wall)")
    # the answer lens's last row is the model's own answer logit, which DLA's target also is
    print(f"answer lens last row vs DLA target: max gap {float((answers_res.values[-1] - dla.target).abs().max()):.2e}")
    if args.skip_tl:
        return
    tl_heads, tl_kl = out["TL 3.9 route"]
    head_rows = [i for i, c in enumerate(dla.components) if c.startswith("L") and "H" in c and " " not in c]
    gap = float((dla.scores[head_rows] - tl_heads.cpu()).abs().max())
    kl_gap = float((lens.kl - tl_kl.cpu()).abs().max())
    ours_name, tl_name = "ours: cached pass + logit lens + DLA", "TL 3.9 route"
    print(f"TL / ours: {med(wall[tl_name]) / med(wall[ours_name]):.2f}x wall, {med(cpu[tl_name]) / med(cpu[ours_name]):.2f}x CPU; "
          f"per-head DLA max |ours - TL| = {gap:.2e}; lens KL max gap = {kl_gap:.2e}; "
          f"DLA sum gap = {float((dla.total() - dla.target).abs().max()):.2e}")


if __name__ == "__main__":
    main()
