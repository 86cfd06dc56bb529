"""Build ``notebooks/circuits.ipynb`` (outputs stripped) with nbformat.

Run:  .venv/bin/python notebooks/build_circuits.py            # writes the notebook
      .venv/bin/python notebooks/build_circuits.py --execute  # and runs it once with nbclient
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import build as _build_cells  # noqa: E402
from _build import main  # noqa: E402

OUT = Path(__file__).with_name("circuits.ipynb")

CELLS = [
    ("md", """# Circuit discovery with `mechinterp.circuits`

Edge-level circuit search (EAP, EAP-IG, exact edge patching, ACDC), checked against circuits
known by construction:

* `zoo:tracr-reverse` and `zoo:tracr-frac-prevs` — RASP programs compiled by tracr (ACDC's two
  tracr benchmarks); their `circuit.json` holds ACDC's reference edges;
* `zoo:attn-only-2l` — a trained 2-layer attention-only model with a previous-token → induction
  circuit.

Every edge `sender -> receiver` (`embed`, `L{l}H{h}`, `MLP{l}` → `L{l}H{h}.q/.k/.v`, `MLP{l}`,
`logits`) is scored; the one-pass edge-patching engine evaluates many candidate circuits at once."""),
    ("code", """import torch
import mechinterp
from mechinterp.circuits import (SCORERS, compare_to_reference, discover, faithfulness, faithfulness_curve,
                                 circuit_report, setup_for)
torch.set_num_threads(1)
sorted(SCORERS)"""),
    ("md", """## 1. tracr-frac-prevs: every method finds the compiled circuit

Zero ablation, as in the ACDC paper. `setup_for` caches the clean and ablated sender outputs once;
every scorer reuses them."""),
    ("code", """frac = mechinterp.load("zoo:tracr-frac-prevs")
task = mechinterp.tasks.load("tracr-frac-prevs", frac, n=16, seed=0)
setup = setup_for(frac, task, "zero")
found = {}
for method in ["eap", "eap-ig-inputs", "eap-ig-activations", "exact", "acdc"]:
    opts = {"distance": "l2"} if method == "acdc" else {}
    found[method] = discover(frac, task, method, "zero", setup=setup, **opts)
    print(f"{method:20s} edge AUC {compare_to_reference(found[method], task.ground_truth.circuit)['auc']:.3f}")"""),
    ("code", """c = found["exact"].top_n(5)      # a new Circuit; found["exact"] is unchanged
print(c.edges())
c.plot();"""),
    ("md", """## 2. tracr-reverse: exact patching and ACDC recover all 10 edges

Length-3 inputs (ACDC's setting). At the maximum length 5 the length sub-circuit is invisible to
zero ablation: zeroing L0H0's value input reads as "length 5"."""),
    ("code", """rev = mechinterp.load("zoo:tracr-reverse")
rtask = mechinterp.tasks.load("tracr-reverse", rev, n=16, seed=0, seq_len=3)
rsetup = setup_for(rev, rtask, "zero")
acdc = discover(rev, rtask, "acdc", "zero", setup=rsetup, distance="l2")
print("ACDC sweep:", [(round(r['threshold'], 4), r['n_edges']) for r in acdc.info['sweep']])
print("edge AUC", compare_to_reference(acdc, rtask.ground_truth.circuit))
ref = acdc.with_edges(rtask.ground_truth.circuit["edges"])
print("faithfulness of the reference circuit alone:", float(faithfulness(rev, rsetup, rtask.metric, ref)[0]))"""),
    ("md", """## 3. attn-only-2l induction

ACDC's corruption for induction: random-token sequences (`corruption="random"`), so queries, keys
and values of the induction heads all differ between the clean and corrupted runs. (The task's
default corruption, `"second_copy"`, keeps the first copy: fine for position-by-position
activation patching, blind to K-composition under edge patching.) The reference is the card's
22 edges; the previous-token heads' positional q/k inputs are listed apart (no token-level
ablation can move them). Exact, ACDC and EAP-IG over activations reach AUC >= 0.95; EAP, a
gradient at the clean run where the induction heads' attention is saturated, does not."""),
    ("code", """ind = mechinterp.load("zoo:attn-only-2l")
itask = mechinterp.tasks.load("induction", ind, n=12, seed=0, corruption="random")
isetup = setup_for(ind, itask, "corrupted")
for method in ["eap", "eap-ig-activations", "exact"]:
    ci = discover(ind, itask, method, "corrupted", setup=isetup)
    print(f"{method:18s} AUC {compare_to_reference(ci, itask.ground_truth.circuit)['auc']:.3f}  top: {ci.edges()[:4]}")"""),
    ("code", """curve = faithfulness_curve(ind, isetup, itask.metric, ci)
print(f"CPR {curve.cpr:.3f}  CMD {curve.cmd:.3f}")
curve.plot();"""),
    ("md", """## 4. The report

A self-contained offline page: task and model, graph, reference agreement, per-node patching
effects, attention patterns of the circuit's heads, faithfulness curve. The CLI writes the same:
`mechinterp circuit --model zoo:attn-only-2l --task induction --corruption random --method exact --out out/circuit`."""),
    ("code", """from IPython.display import HTML
html = circuit_report(ind, itask, ci.top_n(22), setup=isetup, curve=curve)
print(len(html), "characters; external references:", "http" in html)
HTML(html)"""),
]


def build():  # noqa: ANN201 - the notebook (nbformat.NotebookNode)
    return _build_cells(CELLS)


if __name__ == "__main__":
    main(CELLS, OUT, __doc__)
