"""The model card (``card.md``) of a converted tracr model."""

from __future__ import annotations

from typing import Any

_ABOUT = {
    "tracr-reverse": (
        (
            "Reverses its input: the output at position i (after BOS) is the input token at "
            "position n-1-i, where n is the input length."
        ),
        (
            'model = mechinterp.load("zoo:tracr-reverse")\n'
            'logits = model("1 2 3 3")            # BOS is prepended\n'
            "print(model.to_str_tokens(logits[0, 1:].argmax(-1)))  # ['3', '3', '2', '1']"
        ),
        (
            "Categorical. `d_vocab_out == d_vocab`: the unembedding copies the output space "
            "`reverse:v` to the logit of the token `v` of the model's own tokenizer (all other "
            "logits are 0 before `center_unembed`), so `logits.argmax(-1)` at positions 1..n is "
            "the reversed input as token ids. Position 0 (BOS) carries no answer."
        ),
    ),
    "tracr-frac-prevs": (
        'At each position i (after BOS), the fraction of the tokens 0..i equal to "x".',
        (
            'model = mechinterp.load("zoo:tracr-frac-prevs")\n'
            'logits = model("x w x y")\n'
            "print(logits[0, 1:, 0])  # tensor([1.0000, 0.5000, 0.6667, 0.5000])"
        ),
        (
            "Numerical. The answer lives in one residual direction (`frac_prevs`). "
            "`d_vocab_out == 2` and the unembedding reads that direction with +1 and -1, so "
            "the logits are `[value, -value]`: `logits[..., 0]` is the fraction. The two "
            "columns have mean zero, so `center_unembed` (on by default in `mechinterp.load`) "
            "does not change them. Position 0 (BOS) carries no answer."
        ),
    ),
    "tracr-prev-tokens": (
        (
            "The token two positions back: the output at position i (after BOS) is input token i-2, "
            "computed as two one-position shifts (`prev_1` = the previous token, then `prev_2` = "
            "`prev_1` one position back). Positions 1 and 2 have no answer (tracr's `None`). Built "
            "for the sparse-dictionary tests: its residual variables (`tokens`, `indices`, "
            "`prev_1`, `prev_2`) are independent for i.i.d. tokens."
        ),
        (
            'model = mechinterp.load("zoo:tracr-prev-tokens")\n'
            'logits = model("a b c d e")\n'
            "print(model.to_str_tokens(logits[0, 3:].argmax(-1)))  # ['a', 'b', 'c']"
        ),
        (
            "Categorical. `d_vocab_out == d_vocab`: the unembedding copies the output space "
            "`prev_2:v` to the logit of the token `v` of the model's own tokenizer, so "
            "`logits.argmax(-1)` at positions 3..n is the input shifted by two. Positions 0-2 carry "
            "no answer (all logits 0 before `center_unembed`)."
        ),
    ),
}


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def make_card(name: str, meta: dict[str, Any], circuit: dict[str, Any], results: dict[str, Any]) -> str:
    """Markdown model card from the compile metadata, the circuit and the checks."""
    about, example, output = _ABOUT[name]
    mc = meta["model_config"]
    comps = _table(
        [
            [
                f"`{r['component']}`",
                f"`{r['label']}`",
                r["op"],
                ", ".join(
                    f"{k.split('_')[0]}: {len(r[k])} dims"
                    for k in ("query_reads", "key_reads", "value_reads")
                    if k in r
                )
                or f"reads {len(r['reads'])} dims",
                f"{len(r['writes'])} dims",
            ]
            for r in meta["components"]
        ],
        ["component", "RASP label", "operation", "reads", "writes"],
    )
    used = {r["component"] for r in meta["components"]}
    empty = [f"L{l}H0" for l in range(mc["num_layers"]) if f"L{l}H0" not in used]
    empty += [f"MLP{l}" for l in range(mc["num_layers"]) if f"MLP{l}" not in used]
    extra = [e for e in circuit["weight_edges"] if e not in circuit["edges"]]
    extra_text = (
        "Its extra edges, " + ", ".join(f"`{a} → {b}`" for a, b in extra) + ", carry nothing the outputs "
        "need on valid inputs (`circuit_only` below): an all-true selector (`length`) scores every "
        "key alike, so zeroing its query or key input leaves its attention pattern unchanged, and "
        "a query's `one` direction only drives tracr's default attention to BOS."
        if extra
        else "The two sets are equal."
    )
    acdc = name in ("tracr-reverse", "tracr-frac-prevs")
    settings = (
        "the settings ACDC used (Conmy et al.\n2023, `acdc/tracr_task/utils.py`)"
        if acdc
        else "ACDC's settings (Conmy et al. 2023) but\nits own vocabulary and length"
    )
    reference = (
        f"These are ACDC's reference edges (`get_tracr_{'reverse' if name == 'tracr-reverse' else 'proportion'}_edges`)"
        if acdc
        else "ACDC defines no circuit for this program; these are the edges derived from the compiled weights,"
    )
    exhaustive = "every input" if meta["vocab"] and len(meta["vocab"]) ** meta["max_seq_len"] <= 4096 else (
        "every input (a seeded sample of 4096 for lengths with more)"
    )
    checks = "\n".join(f"- **{k}**: {v}" for k, v in results.items())
    words = [str(v) for v in meta["vocab"]]
    return f"""# {name}

{about}

A transformer **compiled, not trained**: the RASP program below was compiled to weights by
tracr (`tracr-pypi` 1.0.0, Lindner et al. 2023) with {settings}, then converted to a TransformerLens `HookedTransformer`
by `experiments/tracr/convert.py` (from the numpy dump of `experiments/tracr/compile_tracr.py`;
no JAX at run time). Its mechanism is known by construction.

## Usage

```python
import mechinterp
{example}
```

## Program

```python
{meta["program_source"].strip()}
```

Compile settings: vocab `{meta["vocab"]}`, `max_seq_len={meta["max_seq_len"]}`,
`compiler_bos="{meta["compiler_bos"]}"`, `compiler_pad="{meta["compiler_pad"]}"`,
`causal={meta["causal"]}`, `mlp_exactness={meta["mlp_exactness"]}`
(compile time {meta["compile_seconds"]} s on CPU).

## Architecture

`n_layers={mc["num_layers"]}`, `n_heads={mc["num_heads"]}`, `d_model={mc["d_model"]}`,
`d_head={mc["key_size"]}`, `d_mlp={mc["mlp_hidden_size"]}`, `n_ctx={mc["n_ctx"]}` (BOS + up to
{meta["max_seq_len"]} tokens), `act_fn="relu"`, `normalization_type=None`, standard (learned
absolute) positional embeddings, **bidirectional attention** (tracr compiles non-causal
models). Sublayers tracr left empty hold zero weights: {", ".join(empty) or "none"}.

Tokenizer: word-level, ids `0=<pad>, 1=<bos>, 2=<unk>`, then {", ".join(f"`{i + 3}={w}`" for i, w in enumerate(words))};
whitespace-separated text (`"{" ".join(words[:3])}"`). `<bos>` embeds as tracr's `BOS`,
`<pad>` as `PAD` (no attention mask: do not pad inputs), `<unk>` as zeros.
RASP `indices` count from the first token after BOS (BOS has no position embedding).

Output: {output}

Residual stream (`d_model={mc["d_model"]}`, one direction per value, as tracr lays it out):
`{", ".join(meta["residual_labels"])}`.

## Which component implements which RASP operation

{comps}

## Ground-truth circuit (`circuit.json`)

Nodes {", ".join(f"`{n}`" for n in circuit["nodes"])}; edges (sender → receiver):
{", ".join(f"`{a} → {b}`" for a, b in circuit["edges"])}.

{reference}
in mechinterp's node names (`embed` = token + position embedding). `weight_edges` in the same
file lists every edge along which a component writes a residual direction that a later one
reads ({len(circuit["weight_edges"])} edges, which contain all of `edges`). {extra_text}

## Verification

Against tracr's own outputs on {exhaustive} of length 1 to {meta["max_seq_len"]} (all
`positions` below are output positions after BOS; categorical: argmax equality, and
`max_margin_shortfall` = 1 − (top logit − runner-up) ≤ 0 means one-hot logits;
numerical: |value − tracr| < 1e-4). `circuit_only` runs the model with only the circuit's
edges (every other edge zero-ablated); `loaded` is the model as `mechinterp.load` returns it
(weight processing on). `mismatches_without_each_circuit_edge`: the circuit minus one edge
(so every edge of the circuit is necessary, and the circuit is sufficient).

{checks}
"""
