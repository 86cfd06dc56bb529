"""The report's opening: what was found, in plain sentences, each linked to its section; and each circuit node's details.

:func:`findings` reads the numbers the sections wrote (``data``, the JSON report) and what
they left for each other (``store``): the behaviour and its size, the components with the
largest effects (with intervals over prompts where there are per-prompt values), the
circuit's size and faithfulness, where the methods agree and disagree, the probe's verdict,
and the caveats (small n, subsets, reductions, failed sections).

Example:
    >>> data = {"task": {"task": "ioi", "model": "zoo:toy-lm", "prompts": 12, "accuracy": 1.0,
    ...                  "metric clean": 9.1, "metric corrupted": -0.4}}
    >>> [f["section"] for f in findings(data, {}, {})]
    ['task', 'caveats']
"""

from __future__ import annotations

from typing import Any

from mechinterp.viz import escape

__all__ = ["findings", "findings_html", "node_info"]

#: below this many prompts an estimate is flagged as noisy
SMALL_N = 16


def _heads(names: list[str], k: int = 5) -> list[str]:
    return [n for n in names if n.startswith("L") and "H" in n][:k]


def findings(data: dict[str, Any], store: dict[str, Any], errors: dict[str, str]) -> list[dict[str, str]]:
    """``[{"section": id, "text": sentence}, ...]`` in page order (the text is plain, not HTML)."""
    out: list[dict[str, str]] = []
    t = data.get("task")
    if t:
        gap = t["metric clean"] - t["metric corrupted"]
        out.append({"section": "task", "text": (
            f"Behaviour: on {t['prompts']} {t['task']} prompts, {t['model']} puts the correct answer on top "
            f"{100 * t['accuracy']:.0f}% of the time; the metric is {t['metric clean']:.2f} on the clean prompts and "
            f"{t['metric corrupted']:.2f} on the corrupted ones, a gap of {gap:.2f}.")})
    p = data.get("patching")
    if p:
        effects = p.get("head_effects", {})
        top = sorted(effects.items(), key=lambda kv: -abs(kv[1]))[:3]
        dla = {r["head"]: r for r in p.get("dla", [])}
        parts = []
        for h, v in top:
            d = dla.get(h)
            parts.append(f"{h} ({v:+.2f}" + (f"; direct effect {d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" if d else "")
                         + ")")
        if parts:
            out.append({"section": "patching", "text": (
                f"Components: patching one head's output from the clean run restores the most for {', '.join(parts)} "
                f"(share of the clean − corrupted gap restored, mean over {p['prompts']} prompts; the direct effect on "
                f"the logit difference with its 95% interval over prompts).")})
    ln = data.get("lens")
    if ln:
        where = (f"the correct answer is the top token from {ln['first_top_row']} on" if ln["first_top_row"] else
                 "the correct answer is not the top token at every late layer")
        probs = ", ".join(f"{r['p(correct)']:.2f}" for r in ln["rows"])
        parts = ", ".join(f"{r['component']} {r['mean']:+.2f}" for r in ln["dla"][:3])
        out.append({"section": "lens", "text": (
            f"Logit lens: {where} (mean probability of the correct answer by layer: {probs}). Direct logit "
            f"attribution of {ln['dla_target']} (mean {ln['mean_target']:.2f}): the largest parts are {parts}.")})
    c = data.get("circuit")
    if c:
        reach = [k for k, f in zip(c["sizes"], c["size_faithfulness"]) if f >= 0.8]
        smallest = (f"the smallest size drawn that reaches 0.8 is {reach[0]} edges" if reach else
                    f"none of the sizes drawn ({', '.join(map(str, c['sizes']))} edges) reaches 0.8")
        frac = c["faithfulness"]
        at = [x for x, f in zip(frac["n_edges"], frac["faithfulness"]) if f >= 0.8]
        curve = (f"; over all edges, the top {at[0]} ({100 * at[0] / max(c['n_graph_edges'], 1):.1f}%) reach 0.8" if at else "")
        out.append({"section": "circuit", "text": (
            f"Circuit: the {c['shown']} edges of largest EAP-IG score (of {c['n_graph_edges']}, "
            f"{100 * c['shown'] / max(c['n_graph_edges'], 1):.1f}%) have faithfulness {c['shown_faithfulness']:.2f} "
            f"(1 = the whole model, 0 = the corrupted run); {smallest}{curve}. Curve areas: CPR "
            f"{frac['cpr']:.3f}, CMD {frac['cmd']:.3f}.")})
    patch_heads = _heads(sorted(p.get("head_effects", {}), key=lambda h: -abs(p["head_effects"][h]))) if p else []
    circuit_heads = _heads(store.get("heads") or [])
    if patch_heads and circuit_heads:
        both = [h for h in patch_heads if h in circuit_heads]
        only_p = [h for h in patch_heads if h not in circuit_heads]
        only_c = [h for h in circuit_heads if h not in patch_heads]
        text = (f"Agreement: of the top 5 heads by patching and the first 5 heads of the circuit, "
                f"{len(both)} are shared ({', '.join(both) or 'none'})")
        if only_p:
            text += f"; only patching ranks {', '.join(only_p)} high"
        if only_c:
            text += f"; only the circuit has {', '.join(only_c)}"
        kinds = store.get("head_kinds") or {}
        roles = []
        for h in both or circuit_heads[:3]:
            scored = [(kind, table.get(h, 0.0)) for kind, table in kinds.items()]
            best = max(scored, key=lambda kv: kv[1] if kv[1] == kv[1] else -1, default=None)
            if best and best[1] == best[1] and best[1] >= 0.3:
                roles.append(f"{h} scores {best[1]:.2f} as a {best[0].replace('_', ' ')} head")
        out.append({"section": "circuit", "text": text + "." + (f" Head detection: {'; '.join(roles)}." if roles else "")})
    tops = store.get("attribution_tops")
    if tops:
        first = tops[0]
        votes = sorted(set(first.values()), key=lambda tok: -list(first.values()).count(tok))
        lead = votes[0]
        agree = [m for m, tok in first.items() if tok == lead]
        verdict = (f"all {len(first)} methods put the largest attribution on {lead!r}" if len(votes) == 1 else
                   f"{len(agree)} of {len(first)} methods put the largest attribution on {lead!r}; "
                   + ", ".join(f"{m} on {tok!r}" for m, tok in first.items() if tok != lead))
        out.append({"section": "attribution", "text": f"Attribution: on the first prompt, {verdict}."})
    e = data.get("explain")
    if e and e["counterfactual"]["prompts"]:
        cf = e["counterfactual"]
        text = (f"Counterfactuals: the smallest token edit flips the prediction on {cf['flipped']} of {cf['prompts']} "
                f"prompts ({cf['one_edit']} with one edit)")
        if cf["ground_truth_prompts"]:
            text += f"; {cf['ground_truth_hits']} of {cf['ground_truth_prompts']} edit a ground-truth causal position"
        sur = e.get("surrogate") or {}
        if "fidelity_test" in sur:
            text += (f"; a surrogate tree agrees with the model on {100 * sur['fidelity_test']:.0f}% of "
                     f"{sur['n_test']} held-out prompts (constant answer: {100 * sur['majority_test']:.0f}%)")
        out.append({"section": "explain", "text": text + "."})
    d = data.get("dictionary")
    if d and d["top_latents"]:
        q = d["quality"]
        lead = ", ".join(f"{r['latent']} ({r['patched effect']:+.2f} patched alone)" for r in d["top_latents"][:3])
        total = abs(d["latent_total"]) + abs(d["error_total"])
        share = abs(d["error_total"]) / total if total else 0.0
        out.append({"section": "dictionary", "text": (
            f"Sparse features: an SAE at {d['site']} (explained variance {q['explained variance']:.2f}, CE loss recovered "
            f"{q['CE loss recovered']:.2f}) puts the metric's first-order dependence most on latents {lead}; its error term "
            f"carries {100 * share:.0f}% of the total.")})
    v = store.get("probe_verdict")
    if v:
        out.append({"section": "probes", "text": f"Probe: the label {v['label']!r} is {v['sentence']}."})
    caveats = []
    if t and t["prompts"] < SMALL_N:
        caveats.append(f"only {t['prompts']} prompts: every estimate is noisy")
    if p and p["prompts"] < (t or {}).get("prompts", p["prompts"]):
        caveats.append(f"patching used {p['prompts']} of the {t['prompts']} prompts (one token length, the plan's cap)")
    if c and t and c["prompts"] < t["prompts"]:
        caveats.append(f"the circuit was found on {c['prompts']} of the {t['prompts']} prompts")
    reasons = (data.get("plan") or {}).get("reasons") or []
    if reasons:
        caveats.append(f"{len(reasons)} setting(s) were reduced to fit the time budget (see the run plan)")
    if errors:
        caveats.append(f"section(s) failed: {', '.join(errors)}")
    out.append({"section": "caveats", "text": "Caveats: " + ("; ".join(caveats) if caveats else "none noted") + "."})
    return out


def findings_html(items: list[dict[str, str]]) -> str:
    """The summary box: one list item per finding, linked to its section."""
    rows = "".join(
        f"<li>{escape(f['text'])}" + (f" <a href='#{f['section']}'>→ section</a>" if f["section"] != "caveats" else
                                      " <a href='#plan'>→ run plan</a>") + "</li>"
        for f in items
    )
    return f"<section id='summary'><h2>What was found</h2><ul class='findings'>{rows}</ul></section>"


def _pattern_svg(tokens: list[str], pattern: Any, limit: int = 24) -> str:
    """A small query × key heatmap as inline SVG (the last ``limit`` tokens)."""
    import torch

    m = torch.as_tensor(pattern, dtype=torch.float32)[-limit:, -limit:]
    toks = tokens[-limit:]
    n, cell, pad = len(toks), 12, 70
    rects = "".join(f"<rect x='{pad + j * cell}' y='{pad + i * cell}' width='{cell}' height='{cell}' "
                    f"fill='rgba(44,127,184,{float(m[i, j]):.3f})'><title>{escape(toks[i])} → {escape(toks[j])}: "
                    f"{float(m[i, j]):.2f}</title></rect>" for i in range(n) for j in range(n))
    rows = "".join(f"<text x='{pad - 3}' y='{pad + i * cell + 9}' font-size='8' text-anchor='end'>{escape(t[:10])}</text>"
                   for i, t in enumerate(toks))
    cols = "".join(f"<text transform='translate({pad + j * cell + 8},{pad - 3}) rotate(-60)' font-size='8'>{escape(t[:10])}"
                   f"</text>" for j, t in enumerate(toks))
    size = pad + n * cell + 4
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}' class='pattern'>{rects}{rows}{cols}</svg>"
            "<p class='muted'>attention on the first prompt: rows attend (query), columns are attended (key); darker = more</p>")


def node_info(store: dict[str, Any]) -> dict[str, str]:
    """Node name -> HTML with what the other sections measured about it (shown when the node is clicked)."""
    nodes = {n.split(".")[0] for s, r, _ in store.get("circuit_edges", []) for n in (s, r)}
    effects, dla = store.get("head_effects", {}), store.get("dla", {})
    kinds, patterns = store.get("head_kinds", {}), store.get("patterns", {})
    info = {}
    for node in sorted(nodes):
        lines = []
        if node in effects:
            lines.append(f"<li>activation patching (z): restores {effects[node]:+.3f} of the gap</li>")
        if node in dla:
            d = dla[node]
            lines.append(f"<li>direct logit attribution: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]</li>")
        for kind, table in kinds.items():
            if node in table and table[node] == table[node]:
                lines.append(f"<li>{escape(kind.replace('_', ' '))} score: {table[node]:.2f}</li>")
        html = f"<ul>{''.join(lines)}</ul>" if lines else "<p class='muted'>(no per-node measurement for this node)</p>"
        if node in patterns:
            html += _pattern_svg(*patterns[node])
        info[node] = html
    return info
