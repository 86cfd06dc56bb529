"""Surrogate models: an interpretable model (scikit-learn) that imitates the LM on a task distribution.

:func:`fit_surrogate` runs the model on a set of prompts, takes its prediction on each (the
top-1 next token, over a label set such as ``["positive", "negative"]`` when given), and
fits a **decision tree** (``kind="tree"``) or an **L1-sparse logistic regression**
(``kind="linear"``) that predicts the model's answer from features you choose:

* ``"tokens"``: one binary feature per vocabulary token, "the prompt contains this token"
  (tokens seen in at least ``min_count`` training prompts; BOS and padding left out);
* :class:`ActivationFeatures`: projections of the model's activations at one hook (a
  layer's residual stream, say) on directions you give (probe directions), read at the
  last prompt token;
* a function ``prompt -> {feature name: value}``.

The prompts are split into a training part and a held-out part (``test_fraction``); the
result reports the **fidelity** (agreement of the surrogate with the model, not with the
truth) on both, the majority-class rate for comparison, and the surrogate itself: the tree
as nested dicts and as rules, or the non-zero coefficients.

The local variant, a sparse linear model around one prompt, is LIME:
:func:`local_surrogate` calls :mod:`mechinterp.attribution`'s LIME (no re-implementation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from mechinterp.core.precision import runs_synced
from mechinterp.core.results import AbstractResult
from mechinterp.core.tokens import tokenize
from mechinterp.errors import EmptyInputError, MechinterpError, UnknownSiteError
from mechinterp.explain.common import piece, special_ids, token_ids
from mechinterp.viz import escape, table_html
from mechinterp.core.validation import check_count

__all__ = ["ActivationFeatures", "Surrogate", "fit_surrogate", "local_surrogate"]


@dataclass(frozen=True)
class ActivationFeatures:
    """Features: projections of one hook's activation at the last prompt token on given directions.

    Attributes:
        hook: a TransformerLens hook name with a ``[batch, pos, d]`` activation
            (``"blocks.2.hook_resid_post"``).
        directions: ``[n_features, d]`` directions (probe weights, difference of means, ...).
        names: one name per direction (default ``"<hook>·dir<i>"``).
    """

    hook: str
    directions: Float[Tensor, "n_features d"]
    names: list[str] | None = None


@dataclass(frozen=True)
class Surrogate(AbstractResult):
    """The result of :func:`fit_surrogate`.

    Attributes:
        kind: ``"tree"`` or ``"linear"``.
        feature_names: one name per feature column.
        classes: the model's answers the surrogate predicts (token strings).
        fidelity_train / fidelity_test: agreement of the surrogate with the model on the
            training and the held-out prompts.
        majority_test: the share of held-out prompts with the most frequent training answer
            (what a constant surrogate reaches).
        n_train / n_test: prompts in each part.
        rules: the tree as if-then rules (one per leaf), or the linear model's terms.
        tree: the tree as nested dicts (``feature``, ``threshold``, ``left`` = feature ≤
            threshold, ``right``, ``samples``; a leaf has ``predict`` and ``samples``); ``None``
            for a linear surrogate.
        coefficients: ``{class: {feature: weight}}`` non-zero weights of a linear surrogate
            (one row ``classes[1]`` vs ``classes[0]`` for two classes); ``{}`` for a tree.
        split_features: the tree's split features, breadth first (the root first).
        options: the fitting options.
        estimator: the fitted scikit-learn model (not saved; ``None`` after :meth:`load`).
    """

    kind: str
    feature_names: list[str]
    classes: list[str]
    fidelity_train: float
    fidelity_test: float
    majority_test: float
    n_train: int
    n_test: int
    rules: list[str]
    tree: dict[str, Any] | None = None
    coefficients: dict[str, dict[str, float]] = field(default_factory=dict)
    split_features: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    estimator: Any = field(default=None, compare=False, repr=False)

    @property
    def root_feature(self) -> str | None:
        """The tree's first split feature."""
        return self.split_features[0] if self.split_features else None

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.pop("estimator", None)
        return data

    def plot(self, ax: Any = None) -> Any:
        """The tree drawn (nodes by depth), or a bar chart of the largest coefficients."""
        from mechinterp.viz import pyplot

        plt = pyplot()
        if self.tree is None:
            terms = sorted(((f"{c}: {f}", w) for c, row in self.coefficients.items() for f, w in row.items()),
                           key=lambda t: -abs(t[1]))[:25]
            if ax is None:
                fig, ax = plt.subplots(figsize=(7, 0.3 * len(terms) + 1.5))
            else:
                fig = ax.figure
            ax.barh(range(len(terms)), [w for _, w in terms], color=["#dc322f" if w >= 0 else "#268bd2" for _, w in terms])
            ax.set_yticks(range(len(terms)), labels=[t for t, _ in terms], fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"sparse linear surrogate (fidelity {self.fidelity_test:.3f} held out)")
            fig.tight_layout()
            return fig
        leaves: list[int] = []
        nodes: list[tuple[float, int, str, bool]] = []
        edges: list[tuple[float, int, float, int]] = []

        def place(node: dict[str, Any], depth: int) -> float:
            if "predict" in node:
                x = float(len(leaves))
                leaves.append(1)
                nodes.append((x, depth, f"{node['predict']}\n(n={node['samples']})", True))
                return x
            xl, xr = place(node["left"], depth + 1), place(node["right"], depth + 1)
            x = (xl + xr) / 2
            nodes.append((x, depth, f"{node['feature']}\n≤ {node['threshold']:.3g}?", False))
            edges.extend([(x, depth, xl, depth + 1), (x, depth, xr, depth + 1)])
            return x

        place(self.tree, 0)
        depth = max(d for _, d, _, _ in nodes)
        if ax is None:
            fig, ax = plt.subplots(figsize=(min(18, 2 + 1.3 * len(leaves)), 1.2 + 1.1 * depth))
        else:
            fig = ax.figure
        for x0, d0, x1, d1 in edges:
            ax.plot([x0, x1], [-d0, -d1], color="#999", lw=0.8, zorder=1)
        for x, d, text, leaf in nodes:
            ax.text(x, -d, text, ha="center", va="center", fontsize=7, zorder=2,
                    bbox={"fc": "#e8f4e8" if leaf else "#f5f5f7", "ec": "#888"})
        ax.set_xlim(-0.8, len(leaves) - 0.2)
        ax.set_ylim(-depth - 0.6, 0.6)
        ax.axis("off")
        ax.set_title(f"decision-tree surrogate: fidelity {self.fidelity_test:.3f} held out "
                     f"(majority {self.majority_test:.3f}); left = yes")
        fig.tight_layout()
        return fig

    def to_html(self) -> str:
        """Fidelity table and the rules (offline)."""
        rows = [{"part": "train", "prompts": self.n_train, "fidelity": self.fidelity_train},
                {"part": "held out", "prompts": self.n_test, "fidelity": self.fidelity_test},
                {"part": "majority class (held out)", "prompts": self.n_test, "fidelity": self.majority_test}]
        rules = "".join(f"<li><code>{escape(r)}</code></li>" for r in self.rules[:60])
        more = f"<p class='muted'>… {len(self.rules) - 60} more</p>" if len(self.rules) > 60 else ""
        return (f"<section><h3>{escape(self.kind)} surrogate</h3><p class='muted'>{len(self.feature_names)} features; "
                f"classes {escape(self.classes)}</p>{table_html(rows)}<ol>{rules}</ol>{more}</section>")


def _prompts(prompts: Any) -> list[str] | Tensor:
    if hasattr(prompts, "clean_prompts") and hasattr(prompts, "clean_tokens"):  # a Task
        return list(prompts.clean_prompts)
    if isinstance(prompts, str):
        raise MechinterpError("fit_surrogate needs many prompts (a list, or a Task), got one string; "
                              "for one prompt use local_surrogate (LIME).")
    prompts = list(prompts)
    if not prompts:
        raise EmptyInputError("fit_surrogate: the prompt list is empty.")
    return prompts


def _answers(model: Any, tokens: Tensor, lengths: Tensor, among: list[int] | None, batch_size: int) -> list[int]:
    out: list[int] = []
    with torch.no_grad():
        for lo in range(0, len(tokens), batch_size):
            logits = model(tokens[lo: lo + batch_size].to(model.cfg.device))  # [batch, pos, d_vocab]
            final = logits[torch.arange(logits.shape[0]), (lengths[lo: lo + batch_size] - 1).to(logits.device)]
            if among is None:
                out += final.argmax(-1).tolist()
            else:
                out += [among[i] for i in final[:, among].argmax(-1).tolist()]
    return out


def _activation_features(model: Any, spec: ActivationFeatures, tokens: Tensor, lengths: Tensor, batch_size: int
                         ) -> tuple[np.ndarray, list[str]]:
    if spec.hook not in model.hook_dict:
        raise UnknownSiteError(f"The model has no hook {spec.hook!r}; use a name such as 'blocks.0.hook_resid_post'.")
    dirs = torch.as_tensor(spec.directions, dtype=torch.float32)
    if dirs.ndim == 1:
        dirs = dirs[None]
    rows = []
    with torch.no_grad():
        for lo in range(0, len(tokens), batch_size):
            _, cache = model.run_with_cache(tokens[lo: lo + batch_size].to(model.cfg.device), names_filter=spec.hook)
            act = cache[spec.hook]  # [batch, pos, d]
            if act.ndim != 3 or act.shape[-1] != dirs.shape[-1]:
                raise MechinterpError(f"{spec.hook} has activations of shape {tuple(act.shape)}; directions must be "
                                      f"[n, {act.shape[-1]}] (got {tuple(dirs.shape)}).")
            last = act[torch.arange(act.shape[0]), (lengths[lo: lo + batch_size] - 1).to(act.device)].float().cpu()
            rows.append(last @ dirs.T)
    names = spec.names or [f"{spec.hook}·dir{i}" for i in range(len(dirs))]
    if len(names) != len(dirs):
        raise MechinterpError(f"ActivationFeatures has {len(dirs)} directions but {len(names)} names.")
    return torch.cat(rows).numpy(), list(names)


@runs_synced
def fit_surrogate(
    model: Any,
    prompts: Any,
    *,
    features: str | ActivationFeatures | Callable[[str], dict[str, float]] = "tokens",
    among: Sequence[str | int] | None = None,
    kind: str = "tree",
    max_depth: int | None = 16,
    C: float = 1.0,
    min_count: int = 2,
    test_fraction: float = 0.3,
    seed: int = 0,
    batch_size: int = 64,
) -> Surrogate:
    """Fit an interpretable model that imitates ``model``'s answers on ``prompts``.

    Args:
        model: a ``HookedTransformer``.
        prompts: a list of prompt strings, or a :class:`~mechinterp.tasks.Task` (its clean prompts).
        features: ``"tokens"`` (token presence), an :class:`ActivationFeatures`, or a
            function ``prompt -> {name: value}``.
        among: a label set: the model's answer is its top-1 over these tokens. ``None``:
            the top-1 over the vocabulary.
        kind: ``"tree"`` (a decision tree of depth ``max_depth``) or ``"linear"`` (an
            L1-penalised logistic regression with inverse strength ``C``).
        max_depth: the tree's depth limit (``None``: unlimited). With token-presence
            features a tree is a decision list over single words, so it needs about one
            level per word on one side of the decision (zoo:toy-lm sentiment: 16 negative
            words, 100% held-out fidelity at depth 16, 83% at depth 8).
        C: the linear surrogate's inverse L1 strength (smaller: fewer features).
        min_count: token features must occur in at least this many training prompts.
        test_fraction: the share of prompts held out to measure fidelity.
        seed: the train/test split and the tree's tie-breaking.
        batch_size: prompts per forward pass.

    Returns:
        A :class:`Surrogate` with the fidelity on training and held-out prompts and the
        surrogate (tree, rules, coefficients).

    Raises:
        MechinterpError: bad options, too few prompts, a model that gives one answer only.

    Example:
        >>> import mechinterp
        >>> from mechinterp.explain import fit_surrogate
        >>> model = mechinterp.load("zoo:toy-lm")
        >>> task = mechinterp.tasks.load("sentiment", model, n=300, split="train")
        >>> sur = fit_surrogate(model, task, among=["positive", "negative"])
        >>> sur.fidelity_test > 0.95, sur.root_feature  # doctest: +SKIP
        (True, 'disgusting')
    """
    check_count(batch_size, "batch_size")  # every check before importing sklearn (whose import draws from Python's RNG)
    if kind not in ("tree", "linear"):
        raise MechinterpError(f"kind must be 'tree' or 'linear', got {kind!r}.")
    if not 0 < test_fraction < 1:
        raise MechinterpError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}.")
    if max_depth is not None and (isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1):
        raise MechinterpError(f"max_depth must be an integer >= 1 or None, got {max_depth!r}.")
    if not C > 0:
        raise MechinterpError(f"C must be above 0, got {C!r}.")
    texts = _prompts(prompts)
    if len(texts) < 10:
        raise MechinterpError(f"fit_surrogate needs at least 10 prompts to hold some out (got {len(texts)}).")
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    batch = tokenize(model, texts)
    among_ids = token_ids(model, among, "among")
    answers = np.array(_answers(model, batch.tokens, batch.lengths, among_ids, batch_size))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_test = max(1, int(round(test_fraction * len(texts))))
    test, train = order[:n_test], order[n_test:]

    if isinstance(features, str):
        if features != "tokens":
            raise MechinterpError(f"features must be 'tokens', an ActivationFeatures, or a function; got {features!r}.")
        skip = special_ids(model)
        present = torch.zeros(len(texts), model.cfg.d_vocab, dtype=torch.bool)
        for i in range(len(texts)):
            present[i, batch.tokens[i, : int(batch.lengths[i])]] = True
        present[:, sorted(skip)] = False
        counts = present[torch.as_tensor(train)].sum(0)
        cols = torch.nonzero(counts >= min_count).flatten().tolist()
        X = present[:, cols].numpy().astype(np.float32)
        names = _unique([piece(model, c).strip() or repr(piece(model, c)) for c in cols])
    elif isinstance(features, ActivationFeatures):
        X, names = _activation_features(model, features, batch.tokens, batch.lengths, batch_size)
    elif callable(features):
        dicts = [features(t) for t in texts]
        names = sorted({k for d in dicts for k in d})
        X = np.array([[float(d.get(k, 0.0)) for k in names] for d in dicts], dtype=np.float32)
    else:
        raise MechinterpError(f"features must be 'tokens', an ActivationFeatures, or a function; got {features!r}.")
    if X.shape[1] == 0:
        raise MechinterpError("No features: lower min_count, or pass more prompts.")
    if len(set(answers[train].tolist())) < 2:
        raise MechinterpError(f"The model gives one answer ({piece(model, int(answers[0]))!r}) on every training prompt: "
                              "there is nothing to imitate. Use prompts on which its answer varies.")
    if kind == "tree":
        est = DecisionTreeClassifier(max_depth=max_depth, random_state=seed).fit(X[train], answers[train])
    else:
        est = LogisticRegression(C=C, solver="liblinear", max_iter=2000, **_l1()).fit(X[train], answers[train])
    fid_train = float((est.predict(X[train]) == answers[train]).mean())
    fid_test = float((est.predict(X[test]) == answers[test]).mean())
    values, counts = np.unique(answers[train], return_counts=True)
    majority = float((answers[test] == values[counts.argmax()]).mean())
    classes = [piece(model, int(c)) for c in est.classes_]
    tree = split = None
    coefs: dict[str, dict[str, float]] = {}
    if kind == "tree":
        tree = _tree_dict(est, names, classes)
        split = _splits(tree)
        rules = _rules(tree)
    else:
        rows = est.coef_ if est.coef_.shape[0] > 1 else est.coef_
        labels = classes if est.coef_.shape[0] > 1 else [f"{classes[1]} (vs {classes[0]})"]
        for label, row, b in zip(labels, rows, est.intercept_):
            coefs[label] = {names[j]: float(row[j]) for j in np.argsort(-np.abs(row)) if row[j] != 0}
        rules = [f"{label}: {b:+.3f} " + " ".join(f"{w:+.3f}·[{f}]" for f, w in coefs[label].items())
                 for label, b in zip(labels, est.intercept_)]
    options = {"kind": kind, "max_depth": max_depth, "C": C, "min_count": min_count, "test_fraction": test_fraction,
               "seed": seed, "features": features if isinstance(features, str) else type(features).__name__,
               "among": None if among_ids is None else [piece(model, i) for i in among_ids]}
    return Surrogate(kind, names, classes, fid_train, fid_test, majority, len(train), len(test), rules, tree, coefs,
                     split or [], options, est)


def _l1() -> dict[str, Any]:
    """The L1 penalty in the spelling of the installed scikit-learn (``penalty`` is deprecated from 1.8)."""
    import sklearn

    major, minor = (int(x) for x in sklearn.__version__.split(".")[:2])
    return {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def _tree_dict(est: Any, names: list[str], classes: list[str]) -> dict[str, Any]:
    t = est.tree_

    def node(i: int) -> dict[str, Any]:
        samples = int(t.n_node_samples[i])
        if t.children_left[i] == -1:
            return {"predict": classes[int(np.argmax(t.value[i][0]))], "samples": samples}
        return {"feature": names[int(t.feature[i])], "threshold": float(t.threshold[i]), "samples": samples,
                "left": node(int(t.children_left[i])), "right": node(int(t.children_right[i]))}

    return node(0)


def _splits(tree: dict[str, Any]) -> list[str]:
    out, queue = [], [tree]
    while queue:
        node = queue.pop(0)
        if "feature" in node:
            out.append(node["feature"])
            queue += [node["left"], node["right"]]
    return out


def _rules(tree: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(node: dict[str, Any], conds: list[str]) -> None:
        if "predict" in node:
            out.append(f"if {' and '.join(conds) or 'always'} then {node['predict']} ({node['samples']} prompts)")
            return
        f, th = node["feature"], node["threshold"]
        binary = th == 0.5
        walk(node["left"], conds + ([f"not [{f}]"] if binary else [f"[{f}] <= {th:.3g}"]))
        walk(node["right"], conds + ([f"[{f}]"] if binary else [f"[{f}] > {th:.3g}"]))

    walk(tree, [])
    return out


@runs_synced
def local_surrogate(model: Any, prompt: str | Tensor, target: Any, **lime_options: Any) -> Any:
    """A sparse linear surrogate around one prompt: LIME from :mod:`mechinterp.attribution`.

    Args:
        model, prompt, target: as :func:`mechinterp.attribution.attribute` takes them.
        **lime_options: :class:`~mechinterp.attribution.Lime`'s options (``n_samples``,
            ``alpha``, ``replacement``, ...).

    Returns:
        The :class:`~mechinterp.attribution.TokenAttribution` of LIME (coefficients as
        scores; the surrogate's weighted R² in ``metadata["r2"]``).

    Example:
        >>> res = local_surrogate(model, "The capital of France is", ("Paris", "Rome"), n_samples=128)  # doctest: +SKIP
    """
    from mechinterp.attribution import attribute

    return attribute(model, prompt, target, method="lime", warn=False, **lime_options)
