"""Convert the dumped tracr models to TransformerLens and ship them in the zoo.

Reads only ``out/<name>.npz`` and ``out/<name>.json`` (written by ``compile_tracr.py``
in the JAX environment), so it runs in the main environment without JAX::

    .venv/bin/python experiments/tracr/convert.py

For each program it builds a ``HookedTransformer`` following TransformerLens's tracr demo
(one attention + one MLP sublayer per tracr layer, no normalisation, ReLU, learned
absolute positions, bidirectional attention as tracr compiles it), checks it against
tracr's outputs on every input of length 1 to 5 and against the final residual stream,
checks that ACDC's ground-truth circuit alone reproduces the outputs, saves it with
:func:`mechinterp.zoo.save_model`, reloads it with ``mechinterp.load`` (weight processing
on) and checks again.

Tokens: a word tokenizer (``<pad> <bos> <unk>`` then the vocab) replaces tracr's encoder;
``<bos>`` embeds as tracr's ``BOS``, ``<pad>`` as ``PAD``, ``<unk>`` as zeros.

Outputs:
    * ``tracr-reverse``: ``d_vocab_out == d_vocab``; the unembedding copies the output
      space ``reverse:v`` to the logit of token ``v`` (other logits 0), so the argmax is
      the answer *as a token id of the model's own tokenizer*.
    * ``tracr-frac-prevs``: ``d_vocab_out == 2``, logits ``[value, -value]`` (the
      unembedding reads the ``frac_prevs`` direction with ``+1`` and ``-1``). The columns
      have mean zero, so ``center_unembed`` (on by default in ``load``) leaves them as
      they are and ``logits[..., 0]`` is the fraction.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

import mechinterp
from mechinterp.zoo import ZOO_DIR, save_model
from mechinterp.zoo.tokenizer import SPECIAL_TOKENS, word_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from card import make_card
from circuits import ACDC_EDGES, acdc_circuit, circuit_forward, weight_edges

OUT = Path(__file__).parent / "out"
ZOO_NAMES = {"reverse": "tracr-reverse", "frac_prevs": "tracr-frac-prevs", "prev_tokens": "tracr-prev-tokens"}


def load_dump(program: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and the metadata ``compile_tracr.py`` wrote for ``program``."""
    arrays = dict(np.load(OUT / f"{program}.npz"))
    meta = json.loads((OUT / f"{program}.json").read_text())
    return arrays, meta


def token_map(meta: dict[str, Any]) -> dict[int, int]:
    """tracr input id → id of the word tokenizer (specials first, then the vocab)."""
    words = [str(v) for v in meta["vocab"]]
    ours = {w: i for i, w in enumerate([*SPECIAL_TOKENS, *words])}
    ours[meta["compiler_bos"]] = SPECIAL_TOKENS.index("<bos>")
    ours[meta["compiler_pad"]] = SPECIAL_TOKENS.index("<pad>")
    return {tracr_id: ours[tok] for tok, tracr_id in meta["input_encoding"].items()}


def build(
    program: str, arrays: dict[str, np.ndarray], meta: dict[str, Any], tok_dir: Path
) -> HookedTransformer:
    """A HookedTransformer with the tracr weights of ``program``."""
    mc = meta["model_config"]
    words = [str(v) for v in meta["vocab"]]
    d_vocab = len(SPECIAL_TOKENS) + len(words)
    categorical = meta["categorical_output"]
    cfg = HookedTransformerConfig(
        n_layers=mc["num_layers"],
        d_model=mc["d_model"],
        d_head=mc["key_size"],
        n_heads=mc["num_heads"],
        d_mlp=mc["mlp_hidden_size"],
        n_ctx=mc["n_ctx"],
        d_vocab=d_vocab,
        d_vocab_out=d_vocab if categorical else 2,
        act_fn="relu",
        normalization_type=None,
        attention_dir="causal" if mc["causal"] else "bidirectional",
        positional_embedding_type="standard",
        model_name=ZOO_NAMES[program],
        original_architecture="tracr",
        default_prepend_bos=True,
        seed=0,
        device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=word_tokenizer(words, tok_dir), move_to_device=False)
    d, h, k = mc["d_model"], mc["num_heads"], mc["key_size"]
    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)
    w_e = torch.zeros(d_vocab, d)
    for tracr_id, our_id in token_map(meta).items():
        w_e[our_id] = t(arrays["token_embed/embeddings"][tracr_id])
    w_u = torch.zeros(d, cfg.d_vocab_out)
    if categorical:
        for value, out_id in meta["output_encoding"].items():
            w_u[meta["output_dims"][out_id], len(SPECIAL_TOKENS) + words.index(value)] = 1.0
    else:
        (dim,) = meta["output_dims"]
        w_u[dim, 0], w_u[dim, 1] = 1.0, -1.0
    state = {
        "embed.W_E": w_e,
        "pos_embed.W_pos": t(arrays["pos_embed/embeddings"]),
        "unembed.W_U": w_u,
        "unembed.b_U": torch.zeros(cfg.d_vocab_out),
    }
    for layer in range(mc["num_layers"]):
        p, b = f"transformer/layer_{layer}", f"blocks.{layer}"
        for ours, theirs in (("Q", "query"), ("K", "key"), ("V", "value")):
            state[f"{b}.attn.W_{ours}"] = t(arrays[f"{p}/attn/{theirs}/w"]).reshape(d, h, k).permute(1, 0, 2)
            state[f"{b}.attn.b_{ours}"] = t(arrays[f"{p}/attn/{theirs}/b"]).reshape(h, k)
        state[f"{b}.attn.W_O"] = t(arrays[f"{p}/attn/linear/w"]).reshape(h, k, d)
        state[f"{b}.attn.b_O"] = t(arrays[f"{p}/attn/linear/b"])
        state[f"{b}.mlp.W_in"] = t(arrays[f"{p}/mlp/linear_1/w"])
        state[f"{b}.mlp.b_in"] = t(arrays[f"{p}/mlp/linear_1/b"])
        state[f"{b}.mlp.W_out"] = t(arrays[f"{p}/mlp/linear_2/w"])
        state[f"{b}.mlp.b_out"] = t(arrays[f"{p}/mlp/linear_2/b"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(m.endswith(("mask", "IGNORE")) for m in missing), (missing, unexpected)
    return model.eval()


def compare(
    model: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any], edges: list[list[str]] | None = None
) -> dict[str, float]:
    """Compare ``model`` (or only its circuit ``edges``) with tracr on every dumped input."""
    to_ours = token_map(meta)
    categorical = meta["categorical_output"]
    words = [str(v) for v in meta["vocab"]]
    n = wrong = 0
    max_err = max_resid = 0.0
    for length in range(1, meta["max_seq_len"] + 1):
        tokens = torch.tensor(np.vectorize(to_ours.get)(arrays[f"inputs_{length}"]))
        with torch.no_grad():
            if edges is None:
                logits, cache = model.run_with_cache(tokens)
                resid = cache[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"]
                max_resid = max(
                    max_resid, (resid - torch.tensor(arrays[f"resid_{length}"])).abs().max().item()
                )
            else:
                logits = circuit_forward(model, tokens, edges)
        theirs = torch.tensor(arrays[f"outputs_{length}"])[:, 1:]
        if categorical:
            # Positions where the program's value is None (e.g. a shift's first positions) hold no
            # one-hot in tracr's output space: their argmax is a tie broken by rounding, so skip them.
            defined = torch.tensor(arrays[f"resid_{length}"])[:, 1:, meta["output_dims"]].max(-1).values > 0.5
            expect = torch.tensor([[len(SPECIAL_TOKENS) + words.index(k) for k in meta["output_encoding"]]])[
                0
            ][theirs]
            n += int(defined.sum())
            wrong += ((logits[:, 1:].argmax(-1) != expect) & defined).sum().item()
            top2 = logits[:, 1:].topk(2, dim=-1).values
            if defined.any():
                max_err = max(max_err, (1.0 - (top2[..., 0] - top2[..., 1]))[defined].max().item())
        else:
            n += theirs.numel()
            err = (logits[:, 1:, 0] - theirs).abs()
            wrong += (err >= 1e-4).sum().item()
            max_err = max(max_err, err.max().item())
    out = {"positions": n, "mismatches": wrong}
    out["max_abs_err" if not categorical else "max_margin_shortfall"] = max_err
    if edges is None:
        out["max_resid_diff"] = max_resid
    return out


def convert(program: str) -> dict[str, Any]:
    arrays, meta = load_dump(program)
    name = ZOO_NAMES[program]
    with tempfile.TemporaryDirectory() as tmp:
        model = build(program, arrays, meta, Path(tmp) / "tokenizer")
        built = compare(model, arrays, meta)
        assert built["mismatches"] == 0, built
        state = {k: v.detach() for k, v in model.state_dict().items()}
        derived = weight_edges(state, meta["output_dims"])
        if program in ACDC_EDGES:
            nodes, edges = acdc_circuit(program)
        else:  # no ACDC reference: the circuit is every edge the compiled weights carry
            edges = derived
            nodes = sorted({n.split(".")[0] for e in edges for n in e}, key=lambda n: (n != "embed", n == "logits", n))
        assert all(e in derived for e in edges), (edges, derived)
        circuit_only = compare(model, arrays, meta, edges)
        full_graph = compare(model, arrays, meta, derived)
        necessity = {
            f"{a} -> {b}": compare(model, arrays, meta, [e for e in edges if e != [a, b]])["mismatches"]
            for a, b in edges
        }
        assert min(necessity.values()) > 0, necessity
        ops = {r["component"]: f"{r['label']} = {r['op']}" for r in meta["components"]}
        circuit = {
            "nodes": nodes,
            "edges": edges,
            "ops": ops,
            "source": "construction (tracr compiler); "
            + (
                "edges as ACDC's get_tracr_" + ("reverse" if program == "reverse" else "proportion")
                + "_edges (Conmy et al. 2023)"
                if program in ACDC_EDGES
                else "edges derived from the compiled weights (ACDC has no reference for this program)"
            ),
            "weight_edges": derived,
            "acdc_edges": [
                [f"{s}[{sh}]" if sh is not None else s, f"{r}[{rh}]" if rh is not None else r]
                for r, rh, s, sh in ACDC_EDGES.get(program, [])
            ],
            "notes": "'embed' is token + position embedding ('acdc_edges': ACDC's own [sender, receiver] "
            "hook edges, which tell them apart). 'weight_edges' lists every edge along which a "
            "component writes a residual direction a later one reads (a superset of 'edges'); 'edges' is "
            "the ACDC reference: alone it reproduces every output, and removing any one of its edges breaks "
            "some (see card.md).",
        }
        results = {
            "converted": built,
            "circuit_only": circuit_only,
            "weight_edges_only": full_graph,
            "mismatches_without_each_circuit_edge": necessity,
        }
        folder = ZOO_DIR / name
        card = make_card(name, meta, circuit, results)
        save_model(model, folder, card=card, extra={"circuit.json": circuit})
    start = time.perf_counter()
    loaded = mechinterp.load(f"zoo:{name}")
    load_s = time.perf_counter() - start
    results["loaded"] = compare(loaded, arrays, meta)
    assert results["loaded"]["mismatches"] == 0, results["loaded"]
    assert circuit_only["mismatches"] == 0, circuit_only
    (folder / "card.md").write_text(make_card(name, meta, circuit, results))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    print(f"{name}: {json.dumps(results)}; load {load_s:.2f} s; folder {size / 1e3:.1f} kB")
    return results


if __name__ == "__main__":
    for prog in sys.argv[1:] or ZOO_NAMES:
        convert(prog)
