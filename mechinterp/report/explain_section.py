"""The report's explain section: the first prediction in words, minimal counterfactuals, a surrogate's fidelity.

Three views from :mod:`mechinterp.explain`, on the report's task:

* :func:`~mechinterp.explain.explain_in_words` on the first prompt (integrated gradients
  with the plan's IG steps), each sentence shown beside the evidence values it cites;
* :func:`~mechinterp.explain.counterfactual` (default options) on the first
  ``plan.explain_prompts`` prompts, with whether the edit hits a ground-truth position
  when the task has them; on a task whose answers are two labels (sentiment) the
  prediction is the top-1 over those labels, as the task asks it;
* on such a two-label task only, :func:`~mechinterp.explain.fit_surrogate` (a token-presence
  tree) and its held-out fidelity: one forward pass of the task's prompts.
"""

from __future__ import annotations

import warnings
from typing import Any

from mechinterp.report.plan import ReportPlan
from mechinterp.viz import escape, table_html

__all__ = ["explain_section", "two_labels"]


def two_labels(model: Any, task: Any) -> list[str] | None:
    """The task's two answer labels (token strings) when every answer is one of two tokens, else ``None``."""
    ids = sorted(set(task.correct_tokens.tolist()) | set(task.wrong_tokens.tolist()))
    return [model.to_single_str_token(i) for i in ids] if len(ids) == 2 else None


def explain_section(model: Any, task: Any, plan: ReportPlan, data: dict[str, Any], store: dict[str, Any]) -> str:
    from mechinterp.errors import MechinterpError
    from mechinterp.explain import counterfactual, explain_in_words, fit_surrogate
    from mechinterp.explain.words import fmt

    labels = two_labels(model, task)
    out: dict[str, Any] = {"labels": labels}
    # 1. the first prediction in words
    first = task.clean_tokens[0, : int(task.lengths[0])]
    with warnings.catch_warnings(record=True) as caught:  # e.g. IG's completeness gap: shown in the page, not on stderr
        warnings.simplefilter("always")
        words = explain_in_words(model, first, method="integrated_gradients", n_steps=plan.ig_steps)
    notes = list(dict.fromkeys(str(w.message) for w in caught))
    sentences = [{"sentence": s["text"], "cites": "; ".join(f"{k} = {fmt(k, words.evidence[k])}" for k in s["cites"])}
                 for s in words.sentences]
    out["words"] = {"sentences": words.sentences, "evidence": words.evidence, "warnings": notes}
    # 2. minimal counterfactuals
    k = min(plan.explain_prompts, len(task))
    truth = task.ground_truth.positions
    rows, records, failures = [], [], []
    for i in range(k):
        try:
            cf = counterfactual(model, task.clean_tokens[i, : int(task.lengths[i])], among=labels)
        except Exception as err:  # shown in the page and in report.json; the other prompts still run
            failures.append({"prompt": i + 1, "error": f"{type(err).__name__}: {err}"})
            if "progress" in store:
                store["progress"].note(f"  counterfactual on prompt {i + 1} FAILED: {type(err).__name__}: {err}")
            continue
        hit = bool(set(cf.positions) & set(truth[i])) if truth and truth[i] else None
        edits = ", ".join(f"{e['old']!r}→{e['new']!r} @{e['position']}" if e["kind"] == "substitute" else
                          f"delete {e['old']!r} @{e['position']}" for e in cf.edits) or "none"
        rows.append({"prompt": i + 1, "edits": edits, "flipped": cf.success,
                     "prediction": f"{cf.original_prediction!r} ({cf.original_prob:.3f}) → {cf.new_prediction!r} ({cf.new_prob:.3f})",
                     "edits a ground-truth position": "n/a" if hit is None else hit,
                     "forward passes": cf.n_forward})
        records.append({"prompt": i, "positions": cf.positions, "n_edits": cf.n_edits, "success": cf.success,
                        "ground_truth_hit": hit, "n_forward": cf.n_forward, "summary": cf.summary()})
    if failures:
        data.setdefault("errors", {})["explain"] = failures
    flipped = [r for r in records if r["success"]]
    judged = [r for r in records if r["ground_truth_hit"] is not None]
    out["counterfactual"] = {"prompts": len(records), "records": records, "flipped": len(flipped),
                             "one_edit": sum(r["n_edits"] == 1 for r in flipped),
                             "ground_truth_prompts": len(judged), "ground_truth_hits": sum(bool(r["ground_truth_hit"]) for r in judged)}
    # 3. a surrogate, on a two-label task only
    surrogate_html = ""
    if labels is None:
        out["surrogate"] = {"skipped": "the task's answers are not two labels"}
        surrogate_html = "<p class='muted'>Surrogate skipped: the task's answers are not two labels (it fits one on sentiment-like tasks).</p>"
    else:
        try:
            sur = fit_surrogate(model, task, among=labels)
        except MechinterpError as err:  # e.g. too few prompts, or one answer everywhere: said, not a failure
            out["surrogate"] = {"skipped": str(err)}
            surrogate_html = f"<p class='muted'>Surrogate skipped: {escape(err)}</p>"
        else:
            out["surrogate"] = {"fidelity_test": sur.fidelity_test, "fidelity_train": sur.fidelity_train,
                                "majority_test": sur.majority_test, "n_train": sur.n_train, "n_test": sur.n_test,
                                "root_feature": sur.root_feature, "rules": sur.rules[:8]}
            surrogate_html = (
                "<h3>Surrogate decision tree</h3><p class='caption'>" + escape(
                    f"A decision tree on token presence (depth ≤ {sur.options['max_depth']}) fit to the model's answer "
                    f"among {labels} on {sur.n_train} of the {len(task)} prompts: it agrees with the model on "
                    f"{100 * sur.fidelity_test:.0f}% of the {sur.n_test} held-out prompts (a constant answer: "
                    f"{100 * sur.majority_test:.0f}%); first split on {sur.root_feature!r}.") + "</p>"
                + "<ul>" + "".join(f"<li><code>{escape(r)}</code></li>" for r in sur.rules[:8]) + "</ul>")
    data["explain"] = out
    c = out["counterfactual"]
    gt = (f" On {c['ground_truth_hits']} of the {c['ground_truth_prompts']} prompts with ground truth, the edit touches a "
          "position the task marks as causal." if c["ground_truth_prompts"] else " The task has no ground-truth positions to judge the edits by.")
    return (
        "<h3>The first prediction in words</h3><p class='caption'>" + escape(
            f"Written from measured numbers only (no language model): the prediction on prompt 1 and integrated "
            f"gradients ({plan.ig_steps} steps) to it. Each sentence's numbers are the evidence values beside it.") + "</p>"
        + table_html(sentences)
        + "".join(f"<p class='muted'>Warning: {escape(n)}</p>" for n in notes)
        + "<h3>Minimal counterfactuals</h3><p class='caption'>" + escape(
            f"The smallest token edit (default search: up to 3 edits, plausible replacements only) that changes the "
            f"prediction" + (f" among {labels}" if labels else "") + f", on the first {k} of the {len(task)} prompts"
            + (f" ({len(failures)} failed, see below)" if failures else "") + ": "
            f"{len(flipped)} flipped, {c['one_edit']} with one edit.{gt}") + "</p>"
        + (f"<div class='error'><b>The counterfactual search failed on {len(failures)} prompt(s):</b>"
           f"{table_html(failures)}</div>" if failures else "")
        + table_html(rows)
        + surrogate_html
    )
