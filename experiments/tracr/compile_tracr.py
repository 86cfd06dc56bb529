"""Compile the two tracr programs of the ACDC paper and dump them as numpy + JSON.

Runs in the JAX environment ``.venv-tracr`` (``pip install tracr-pypi``), never at run
time: :mod:`experiments.tracr.convert` reads only what this script writes.

The programs and settings are those of ACDC (Conmy et al. 2023,
``acdc/tracr_task/utils.py``):

* ``reverse``: ``lib.make_reverse(rasp.tokens)`` (``length`` by selector width,
  ``opp_idx = length - indices - 1``, ``Aggregate(Select(indices, opp_idx, EQ), tokens)``),
  vocab ``{1, 2, 3}``, ``max_seq_len=5``, ``compiler_bos="BOS"``.
* ``frac_prevs``: ``lib.make_frac_prevs(rasp.tokens == "x")``, vocab ``{w, x, y, z}``,
  ``max_seq_len=5``, ``compiler_bos="BOS"``.

For each program it writes ``out/<name>.npz`` (every parameter array, keyed
``<haiku module>/<param>``, plus tracr's own outputs on every input of length 1 to 5:
``inputs_<L>``, ``outputs_<L>`` (decoded ids or values), ``resid_<L>`` (final residual
stream)) and ``out/<name>.json`` (config, residual layout, encodings, and which
layer/head/MLP implements which RASP operation).

Usage (environment as built here: tracr-pypi 1.0.0, jax 0.10.2, dm-haiku 0.0.17, numpy 2.4.6;
about 10 s per program on CPU, plus a few seconds for the test set)::

    python3 -m venv .venv-tracr && .venv-tracr/bin/pip install tracr-pypi
    .venv-tracr/bin/python experiments/tracr/compile_tracr.py
    .venv/bin/python experiments/tracr/convert.py
"""

from __future__ import annotations

import inspect
import itertools
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tracr.compiler import (
    assemble,
    basis_inference,
    craft_graph_to_model,
    craft_model_to_transformer,
    expr_to_craft_graph,
    lib,
    nodes,
    rasp_to_graph,
)
from tracr.craft import bases, transformers
from tracr.rasp import rasp

OUT = Path(__file__).parent / "out"
BOS, PAD = "BOS", "PAD"
MAX_SEQ_LEN = 5
MLP_EXACTNESS = 100


def reverse_program() -> rasp.SOp:
    """``reverse`` as in tracr's ``lib.make_reverse`` (and ACDC's inline version)."""
    return lib.make_reverse(rasp.tokens)


def prev_tokens_program() -> rasp.SOp:
    """The token two positions back, by two one-position shifts: ``prev_2 = shift(shift(tokens))``.

    Built for the sparse-dictionary bar (#22): the residual stream's compiled variables
    (``tokens``, ``indices``, ``prev_1``, ``prev_2``) are independent for i.i.d. tokens, unlike
    ``reverse``'s, where ``length``, ``indices`` and ``opp_idx`` are all functions of one
    (length, index) pair.
    """
    prev_1 = lib.shift_by(1, rasp.tokens).named("prev_1")
    return lib.shift_by(1, prev_1).named("prev_2")


def frac_prevs_program() -> rasp.SOp:
    """Fraction of the tokens so far (inclusive) equal to ``"x"``."""
    return lib.make_frac_prevs((rasp.tokens == "x").named("is_x"))


PROGRAMS = {
    "reverse": {
        "build": reverse_program,
        "vocab": {1, 2, 3},
        "source": inspect.getsource(lib.make_length)
        + "\n"
        + inspect.getsource(lib.make_reverse)
        + "\nprogram = make_reverse(rasp.tokens)\n",
    },
    "frac_prevs": {
        "build": frac_prevs_program,
        "vocab": {"w", "x", "y", "z"},
        "source": inspect.getsource(lib.make_frac_prevs)
        + '\nprogram = make_frac_prevs((rasp.tokens == "x").named("is_x"))\n',
    },
    "prev_tokens": {
        "build": prev_tokens_program,
        "vocab": {"a", "b", "c", "d", "e"},
        "max_seq_len": 8,
        "source": inspect.getsource(lib.shift_by)
        + '\nprev_1 = shift_by(1, rasp.tokens).named("prev_1")\nprogram = shift_by(1, prev_1).named("prev_2")\n',
    },
}
# Exhaustive tests up to this many inputs per length; a seeded sample of this many above it.
MAX_TESTS_PER_LENGTH = 4096


def _labels(space: bases.VectorSpaceWithBasis) -> list[str]:
    return [str(d) for d in space.basis]


def _describe(expr: rasp.RASPExpr) -> str:
    """A one-line description of a RASP expression, naming its children."""
    kind = type(expr).__name__
    enc = "numerical" if rasp.is_numerical(expr) else "categorical"
    if isinstance(expr, rasp.Aggregate):
        sel = expr.selector
        if not hasattr(sel.predicate, "name"):  # a lambda, as in lib.shift_by: "q == k + 1"
            pred = inspect.getsource(sel.predicate).split("lambda", 1)[1].split(":", 1)[1].strip().rstrip(")")
            for var, value in inspect.getclosurevars(sel.predicate).nonlocals.items():
                pred = pred.replace(var, repr(value))
            return f"{enc} Aggregate({sel.label}=Select(keys={sel.keys.label}, queries={sel.queries.label}, {pred}), {expr.sop.label})"
        return (
            f"{enc} Aggregate({sel.label}=Select(keys={sel.keys.label}, queries={sel.queries.label}, "
            f"{sel.predicate.name}), {expr.sop.label})"
        )
    if isinstance(expr, rasp.SelectorWidth):
        sel = expr.selector
        return (
            f"SelectorWidth({sel.label}=Select(keys={sel.keys.label}, queries={sel.queries.label}, "
            f"{sel.predicate.name}))"
        )
    children = ", ".join(c.label for c in expr.children)
    return f"{enc} {kind}({children})"


def compile_with_graph(
    program: rasp.SOp, vocab: set[Any], max_seq_len: int = MAX_SEQ_LEN
) -> tuple[Any, list[dict[str, Any]]]:
    """``compiling.compile_rasp_to_model``, step by step, keeping the op → component map.

    Returns:
        The assembled model and one record per model component (attention head or MLP)
        naming the RASP operation it implements and the residual directions it reads and
        writes.
    """
    extracted = rasp_to_graph.extract_rasp_graph(program)
    graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
    basis_inference.infer_bases(graph, sink, vocab, max_seq_len)
    expr_to_craft_graph.add_craft_components_to_rasp_graph(
        graph, bos_dir=bases.BasisDirection(rasp.tokens.label, BOS), mlp_exactness=MLP_EXACTNESS
    )
    allocation = craft_graph_to_model._allocate_modules_to_layers(graph, sources)
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
    assembled = craft_model_to_transformer.craft_model_to_transformer(
        craft_model=craft_model,
        graph=graph,
        sink=sink,
        max_seq_len=max_seq_len,
        causal=False,
        compiler_bos=BOS,
        compiler_pad=PAD,
    )
    # Half-layers (0 attn, 1 mlp, 2 attn, ...) that hold blocks, in order, are the craft
    # model's blocks; tracr assigns each the next haiku module of its type.
    _, module_names = assemble._get_model_config_and_module_names(craft_model)
    halves: set[int] = set()
    for node_id, half in allocation.items():
        halves.add(half)
        if craft_graph_to_model._node_is_residual_block(graph.nodes[node_id]):
            halves.add(half + 1)
    module_of_half = dict(zip(sorted(halves), module_names))
    block_of_module = dict(zip(module_names, craft_model.blocks))

    records: list[dict[str, Any]] = []
    for node_id, half in sorted(allocation.items(), key=lambda kv: kv[1]):
        node = graph.nodes[node_id]
        expr = node[nodes.EXPR]
        block = node[nodes.MODEL_BLOCK]
        parts = block.blocks if isinstance(block, transformers.SeriesWithResiduals) else [block]
        for offset, part in enumerate(parts):
            module = module_of_half[half + offset]
            layer = int(module.split("layer_")[1].split("/")[0])
            rec: dict[str, Any] = {
                "label": expr.label,
                "op": _describe(expr),
                "haiku_module": module,
                "layer": layer,
            }
            if isinstance(part, transformers.AttentionHead):
                heads = list(block_of_module[module].as_multi().heads())
                head = next(i for i, h in enumerate(heads) if h is part)
                rec.update(
                    component=f"L{layer}H{head}",
                    kind="attn",
                    head=head,
                    query_reads=_labels(part.w_qk.left_space),
                    key_reads=_labels(part.w_qk.right_space),
                    value_reads=_labels(part.w_ov.input_space),
                    writes=_labels(part.w_ov.output_space),
                )
            else:
                assert isinstance(part, transformers.MLP)
                rec.update(
                    component=f"MLP{layer}",
                    kind="mlp",
                    hidden=part.fst.output_space.num_dims,
                    reads=_labels(part.fst.input_space),
                    writes=_labels(part.snd.output_space),
                )
            if isinstance(block, transformers.SeriesWithResiduals):
                rec["op"] += f" [part {offset + 1}/2 of selector width]"
            records.append(rec)
    return assembled, records


def test_outputs(model: Any, vocab: set[Any], max_seq_len: int = MAX_SEQ_LEN) -> dict[str, np.ndarray]:
    """tracr's outputs on every input of length 1..max_seq_len (BOS prepended); a seeded sample
    of ``MAX_TESTS_PER_LENGTH`` inputs for lengths with more."""
    forward = jax.jit(model.forward)
    enc = model.input_encoder.encoding_map
    arrays: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(0)
    for length in range(1, max_seq_len + 1):
        if len(vocab) ** length <= MAX_TESTS_PER_LENGTH:
            seqs = list(itertools.product(sorted(vocab), repeat=length))
        else:
            seqs = [tuple(s) for s in rng.choice(sorted(vocab), size=(MAX_TESTS_PER_LENGTH, length))]
        ids = np.array([[enc[BOS]] + [enc[t] for t in s] for s in seqs], dtype=np.int32)
        out = forward(model.params, ids)
        arrays[f"inputs_{length}"] = ids
        arrays[f"outputs_{length}"] = np.asarray(out.unembedded_output)
        arrays[f"resid_{length}"] = np.asarray(out.transformer_output.output, dtype=np.float32)
        # Cross-check the batched jit forward against tracr's own apply() on a few inputs.
        for k in range(0, len(seqs), max(1, len(seqs) // 7)):
            decoded = model.apply([BOS, *seqs[k]]).decoded
            enc_out = getattr(model.output_encoder, "encoding_map", None)
            dec_map = {v: k for k, v in enc_out.items()} if enc_out else None
            row = arrays[f"outputs_{length}"][k]
            mine = [BOS] + [dec_map[int(v)] if dec_map else float(v) for v in row[1:]]
            assert all(a == b if dec_map else abs(a - b) < 1e-6 for a, b in zip(mine[1:], decoded[1:])), (
                seqs[k],
                mine,
                decoded,
            )
    return arrays


def dump(name: str) -> None:
    spec = PROGRAMS[name]
    start = time.perf_counter()
    max_seq_len = spec.get("max_seq_len", MAX_SEQ_LEN)
    model, records = compile_with_graph(spec["build"](), spec["vocab"], max_seq_len)
    compile_s = time.perf_counter() - start
    cfg = model.model_config
    params = {
        f"{mod}/{p}": np.asarray(v, dtype=np.float32) for mod, d in model.params.items() for p, v in d.items()
    }
    labels = list(model.residual_labels)
    out_enc = model.output_encoder
    categorical = out_enc is not None and hasattr(out_enc, "encoding_map")
    if categorical:
        output_space = [f"{records[-1]['label']}:{v}" for v in out_enc.encoding_map]
    else:
        output_space = [records[-1]["label"]]
    meta = {
        "name": name,
        "program_source": spec["source"],
        "vocab": sorted(spec["vocab"]),
        "max_seq_len": max_seq_len,
        "compiler_bos": BOS,
        "compiler_pad": PAD,
        "causal": False,
        "mlp_exactness": MLP_EXACTNESS,
        "compile_seconds": round(compile_s, 2),
        "tracr_version": "tracr-pypi 1.0.0",
        "model_config": {
            "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads,
            "key_size": cfg.key_size,
            "mlp_hidden_size": cfg.mlp_hidden_size,
            "layer_norm": cfg.layer_norm,
            "causal": cfg.causal,
            "activation": "relu",
            "d_model": len(labels),
            "n_ctx": int(params["pos_embed/embeddings"].shape[0]),
            "d_vocab": int(params["token_embed/embeddings"].shape[0]),
        },
        "residual_labels": labels,
        "input_encoding": {str(k): int(v) for k, v in model.input_encoder.encoding_map.items()},
        "categorical_output": categorical,
        "output_encoding": {str(k): int(v) for k, v in out_enc.encoding_map.items()} if categorical else None,
        "output_space": output_space,
        "output_dims": [labels.index(s) for s in output_space],
        "components": records,
        "param_shapes": {k: list(v.shape) for k, v in params.items()},
    }
    tests = test_outputs(model, spec["vocab"], max_seq_len)
    OUT.mkdir(exist_ok=True)
    np.savez_compressed(OUT / f"{name}.npz", **params, **tests)
    (OUT / f"{name}.json").write_text(json.dumps(meta, indent=2))
    n_tests = sum(len(v) for k, v in tests.items() if k.startswith("inputs_"))
    print(
        f"{name}: compiled in {compile_s:.1f} s, {cfg.num_layers} layers, d_model {len(labels)}, "
        f"{n_tests} test inputs -> {OUT / name}.npz/.json"
    )
    for r in records:
        print(f"  {r['component']:6s} {r['op']}")


if __name__ == "__main__":
    import sys

    for program_name in sys.argv[1:] or PROGRAMS:
        dump(program_name)
