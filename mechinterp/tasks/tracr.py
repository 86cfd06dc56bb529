"""The tracr tasks ``tracr-reverse``, ``tracr-frac-prevs`` and ``tracr-prev-tokens``, for the compiled zoo models.

``zoo:tracr-reverse`` and ``zoo:tracr-frac-prevs`` are RASP programs compiled to weights by
tracr (the two tracr benchmarks of ACDC, Conmy et al. 2023), and ``zoo:tracr-prev-tokens``
one compiled the same way, so their circuits are known by construction; see their model
cards. Reverse and frac-prevs answer at *every* position after BOS:

* **tracr-reverse**: the output at token position ``p`` (BOS at 0, inputs at
  ``1..L``) is the input token at position ``L + 1 - p`` (RASP: output ``i`` reads
  input ``n-1-i``).
* **tracr-frac-prevs**: the output at position ``p`` is the fraction of the inputs at
  ``1..p`` equal to ``"x"``; the model gives it as ``logits[..., 0]`` (``logits[..., 1]``
  is its negation).
* **tracr-prev-tokens**: the output at position ``p >= 3`` is the input token at ``p - 2``
  (positions 1 and 2 have no answer; the metric and accuracy skip them).

Clean prompts are random sequences of ``seq_len`` tokens (default: the compiled maximum,
``n_ctx - 1``); corrupted prompts are different random sequences of the same length, as
in ACDC (whose reference circuit was found with zero ablation and an L2 metric).

Metric (``task.metric``, linear in the logits so gradient methods apply; 1 on clean logits):

* reverse and prev-tokens: the logit of the clean answer minus the logit of the corrupted answer, averaged
  over the output positions where the two answers differ (-1 on corrupted logits);
* frac-prevs: ``(v - v_corrupted) / (v_clean - v_corrupted)`` for the predicted fraction
  ``v``, averaged over the output positions where the clean and corrupted fractions differ
  (0 on corrupted logits).

Corrupted prompts are drawn so that at least one position differs. ``correct_tokens`` /
``wrong_tokens`` (for single-token methods) are the clean and corrupted answers at the last
position (reverse; the wrong token is another vocabulary word where the two agree) and the
columns ``0`` / ``1`` (frac-prevs: ``logit_diff_metric`` then gives ``2 v``).
``task.accuracy`` asks for every output position to be right (frac-prevs: within 1e-3).

Ground truth: ``positions`` (for the answer at the last position) is ``[1]`` for reverse
(the first input token), ``[seq_len - 2]`` for prev-tokens and the positions of the ``"x"`` tokens for frac-prevs (each adds
``1/L``; the other tokens add nothing); ``labels`` holds per-position targets (BOS first);
``circuit`` is the zoo model's ``circuit.json``.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:tracr-reverse")
    >>> task = mechinterp.tasks.load("tracr-reverse", model, n=8)
    >>> task.clean_tokens.shape
    torch.Size([8, 6])
    >>> round(task.metric(model(task.clean_tokens)).mean().item(), 4)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from mechinterp.core.zoo_format import read_json
from mechinterp.errors import MechinterpError
from mechinterp.tasks.base import GroundTruth, Task, register

__all__ = ["frac_prevs_targets", "reverse_targets", "tracr_frac_prevs", "tracr_prev_tokens", "tracr_reverse"]

_SPECIAL = ("<pad>", "<bos>", "<unk>")
_ZOO = {"tracr-reverse": "tracr-reverse", "tracr-frac-prevs": "tracr-frac-prevs", "tracr-prev-tokens": "tracr-prev-tokens"}


def reverse_targets(tokens: Int[Tensor, "batch pos"]) -> Int[Tensor, "batch pos"]:
    """The answers of ``reverse`` at every position: BOS kept, the inputs reversed."""
    return torch.cat([tokens[:, :1], tokens[:, 1:].flip(-1)], dim=1)


def frac_prevs_targets(tokens: Int[Tensor, "batch pos"], x_id: int) -> Float[Tensor, "batch pos"]:
    """The answers of ``frac_prevs`` at every position: the running fraction of ``x_id`` (0 at BOS)."""
    is_x = (tokens[:, 1:] == x_id).float()
    counts = is_x.cumsum(-1) / torch.arange(1, is_x.shape[1] + 1, dtype=torch.float32)
    return torch.cat([torch.zeros_like(counts[:, :1]), counts], dim=1)


def _words(model: Any, task: str) -> list[int]:
    """Ids of the model's input words (every token but ``<pad> <bos> <unk>``)."""
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        raise MechinterpError(
            f"The {task} task needs a model with a tokenizer; load it with mechinterp.load('zoo:{task}')."
        )
    vocab = tok.get_vocab()
    return sorted(i for w, i in vocab.items() if w not in _SPECIAL and i < model.cfg.d_vocab)


def _draw(
    words: Int[Tensor, " n_words"], n: int, seq_len: int, seed: int, same: Callable[[Tensor, Tensor], Tensor]
) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """``n`` random clean sequences and corrupted ones for which ``same(clean, corrupted)`` is False."""
    gen = torch.Generator().manual_seed(seed)
    clean = words[torch.randint(len(words), (n, seq_len), generator=gen)]
    corrupted = words[torch.randint(len(words), (n, seq_len), generator=gen)]
    for _ in range(1000):
        redo = same(clean, corrupted)
        if not redo.any():
            return clean, corrupted
        corrupted[redo] = words[torch.randint(len(words), (int(redo.sum()), seq_len), generator=gen)]
    raise MechinterpError(
        f"Could not draw corrupted sequences that differ from the clean ones (seq_len={seq_len})."
    )


def _check(model: Any, task: str, seq_len: int | None, d_vocab_out: int) -> int:
    if model.cfg.d_vocab_out != d_vocab_out:
        raise MechinterpError(
            f"The {task} task reads the output of the compiled tracr model (d_vocab_out={d_vocab_out}); "
            f"this model has d_vocab_out={model.cfg.d_vocab_out}. Use mechinterp.load('zoo:{task}')."
        )
    max_len = model.cfg.n_ctx - 1
    seq_len = max_len if seq_len is None else seq_len
    if not 1 <= seq_len <= max_len:
        raise MechinterpError(f"seq_len must be between 1 and {max_len} (n_ctx - 1 for BOS); got {seq_len}.")
    return seq_len


def _prompts(model: Any, tokens: Int[Tensor, "batch seq"]) -> list[str]:
    return [" ".join(model.tokenizer.convert_ids_to_tokens(row)) for row in tokens.tolist()]


def _circuit(model: Any, task: str) -> dict[str, Any] | None:
    if getattr(model, "zoo_name", None) != _ZOO[task]:
        return None
    return read_json(_ZOO[task], "circuit.json")


def _with_bos(model: Any, seqs: Int[Tensor, "batch seq"]) -> Int[Tensor, "batch pos"]:
    bos = torch.full((seqs.shape[0], 1), model.tokenizer.bos_token_id, dtype=torch.long)
    return torch.cat([bos, seqs], dim=1)


def _copy_task(model: Any, name: str, n: int, seed: int, seq_len: int, source: list[int]) -> Task:
    """A task whose output at position ``p`` is the input token at position ``source[p]`` (-1: no answer)."""
    words = torch.tensor(_words(model, name))
    defined = torch.tensor([s >= 0 for s in source])  # [pos]
    src = torch.tensor([max(s, 0) for s in source])
    copied = sorted({s for s in source if s >= 0})
    clean_seq, corr_seq = _draw(words, n, seq_len, seed,
                                lambda a, b: (a[:, [c - 1 for c in copied]] == b[:, [c - 1 for c in copied]]).all(-1))
    clean, corrupted = _with_bos(model, clean_seq), _with_bos(model, corr_seq)
    target, corr_target = clean[:, src], corrupted[:, src]  # [n, pos]; meaningless where not defined
    differs = (target != corr_target) & defined
    gen = torch.Generator().manual_seed(seed + 1)
    wrong = corr_target[:, -1].clone()
    for i in torch.nonzero(wrong == target[:, -1]).flatten().tolist():
        others = words[words != target[i, -1]]
        wrong[i] = others[torch.randint(len(others), (1,), generator=gen)].item()

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Float[Tensor, " batch"]:
        right = logits.gather(-1, target.to(logits.device)[..., None])[..., 0]
        other = logits.gather(-1, corr_target.to(logits.device)[..., None])[..., 0]
        mask = differs.to(logits.device).float()
        return ((right - other) * mask).sum(-1) / mask.sum(-1)

    def accuracy(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        hit = logits.argmax(-1) == target.to(logits.device)
        return (hit | ~defined.to(logits.device)).all(-1)

    tok = model.tokenizer
    return Task(
        name=name,
        clean_prompts=_prompts(model, clean_seq),
        corrupted_prompts=_prompts(model, corr_seq),
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        lengths=torch.full((n,), seq_len + 1, dtype=torch.long),
        correct_answers=tok.convert_ids_to_tokens(target[:, -1].tolist()),
        wrong_answers=tok.convert_ids_to_tokens(wrong.tolist()),
        correct_tokens=target[:, -1].clone(),
        wrong_tokens=wrong,
        ground_truth=GroundTruth(
            positions=[[source[-1]] for _ in range(n)],
            labels={
                "copied": [[t if d else -1 for t, d in zip(row, defined.tolist())] for row in target.tolist()],
                "source_position": [source] * n,
            },
            circuit=_circuit(model, name),
        ),
        metric_fn=metric,
        accuracy_fn=accuracy,
        meta={"seq_len": seq_len, "source_position": source, "targets": target, "corrupted_targets": corr_target,
              "answered": defined},
    )


@register("tracr-reverse")
def tracr_reverse(model: Any, n: int = 64, seed: int = 0, seq_len: int | None = None) -> Task:
    """Generate ``n`` reverse prompts of ``seq_len`` tokens (default ``n_ctx - 1``) after BOS.

    Args:
        model: ``zoo:tracr-reverse`` (or a model with the same tokenizer and output layout).
        n: number of prompts.
        seed: seed of the random draw; the same seed gives the same task.
        seq_len: input tokens per prompt, 1 to ``n_ctx - 1``.

    Returns:
        A :class:`Task` (see the module docstring for the metric and ground truth);
        ``meta["source_position"][p]`` is the input position that output position ``p``
        copies, ``meta["targets"]`` the clean answers at every position.

    Raises:
        MechinterpError: a model without the tracr output layout, or a bad ``seq_len``.
    """
    seq_len = _check(model, "tracr-reverse", seq_len, model.cfg.d_vocab)
    task = _copy_task(model, "tracr-reverse", n, seed, seq_len, [-1] + [seq_len + 1 - p for p in range(1, seq_len + 1)])
    task.ground_truth.labels["reversed"] = task.ground_truth.labels.pop("copied")
    return task


@register("tracr-prev-tokens")
def tracr_prev_tokens(model: Any, n: int = 64, seed: int = 0, seq_len: int | None = None) -> Task:
    """Generate ``n`` prev-tokens prompts of ``seq_len`` tokens (default ``n_ctx - 1``) after BOS.

    The answer at position ``p >= 3`` is the input token at ``p - 2``; positions 1 and 2 have
    none and are left out of the metric and the accuracy.

    Args:
        model: ``zoo:tracr-prev-tokens``.
        n: number of prompts.
        seed: seed of the random draw; the same seed gives the same task.
        seq_len: input tokens per prompt, 3 to ``n_ctx - 1``.

    Returns:
        A :class:`Task` (see the module docstring); ``meta["answered"]`` marks the positions
        with an answer.

    Raises:
        MechinterpError: a model without the tracr output layout, or a bad ``seq_len``.
    """
    seq_len = _check(model, "tracr-prev-tokens", seq_len, model.cfg.d_vocab)
    if seq_len < 3:
        raise MechinterpError(f"The tracr-prev-tokens task needs seq_len >= 3 (the first answer is at position 3); "
                              f"got {seq_len}.")
    return _copy_task(model, "tracr-prev-tokens", n, seed, seq_len, [-1, -1, -1] + list(range(1, seq_len - 1)))


@register("tracr-frac-prevs")
def tracr_frac_prevs(model: Any, n: int = 64, seed: int = 0, seq_len: int | None = None) -> Task:
    """Generate ``n`` frac-prevs prompts of ``seq_len`` tokens (default ``n_ctx - 1``) after BOS.

    Args:
        model: ``zoo:tracr-frac-prevs`` (vocabulary with an ``"x"`` token; logits
            ``[value, -value]``).
        n: number of prompts.
        seed: seed of the random draw; the same seed gives the same task.
        seq_len: input tokens per prompt, 1 to ``n_ctx - 1``.

    Returns:
        A :class:`Task` (see the module docstring for the metric and ground truth);
        ``meta["targets"]`` / ``meta["corrupted_targets"]`` are the true fractions at every
        position (``[batch, pos]``, 0 at BOS).

    Raises:
        MechinterpError: a model without the tracr output layout or without an ``"x"``
            token, or a bad ``seq_len``.
    """
    seq_len = _check(model, "tracr-frac-prevs", seq_len, 2)
    words = torch.tensor(_words(model, "tracr-frac-prevs"))
    x_id = model.tokenizer.get_vocab().get("x")
    if x_id is None or len(words) < 2:
        raise MechinterpError("The tracr-frac-prevs task needs a vocabulary with 'x' and another word.")
    clean_seq, corr_seq = _draw(words, n, seq_len, seed, lambda a, b: ((a == x_id) == (b == x_id)).all(-1))
    clean, corrupted = _with_bos(model, clean_seq), _with_bos(model, corr_seq)
    target, corr_target = frac_prevs_targets(clean, x_id), frac_prevs_targets(corrupted, x_id)
    gap = target - corr_target
    differs = gap.abs() > 1e-6

    def metric(logits: Float[Tensor, "batch pos d_vocab_out"]) -> Float[Tensor, " batch"]:
        mask = differs.to(logits.device)
        denom = torch.where(mask, gap.to(logits.device), torch.ones_like(gap, device=logits.device))
        recovered = (logits[..., 0] - corr_target.to(logits.device)) / denom
        return (recovered * mask).sum(-1) / mask.sum(-1)

    def accuracy(logits: Float[Tensor, "batch pos d_vocab_out"]) -> Tensor:
        return ((logits[:, 1:, 0] - target[:, 1:].to(logits.device)).abs() < 1e-3).all(-1)

    fmt = lambda v: f"{v:.4g}"
    return Task(
        name="tracr-frac-prevs",
        clean_prompts=_prompts(model, clean_seq),
        corrupted_prompts=_prompts(model, corr_seq),
        clean_tokens=clean,
        corrupted_tokens=corrupted,
        lengths=torch.full((n,), seq_len + 1, dtype=torch.long),
        correct_answers=[fmt(v) for v in target[:, -1].tolist()],
        wrong_answers=[fmt(v) for v in corr_target[:, -1].tolist()],
        correct_tokens=torch.zeros(n, dtype=torch.long),
        wrong_tokens=torch.ones(n, dtype=torch.long),
        ground_truth=GroundTruth(
            positions=[[p for p in range(1, seq_len + 1) if row[p] == x_id] for row in clean.tolist()],
            labels={
                "is_x": (clean == x_id).long().tolist(),
                "frac_prevs": target.tolist(),
            },
            circuit=_circuit(model, "tracr-frac-prevs"),
        ),
        metric_fn=metric,
        accuracy_fn=accuracy,
        meta={"seq_len": seq_len, "x_token": x_id, "targets": target, "corrupted_targets": corr_target},
    )
