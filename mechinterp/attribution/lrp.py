"""AttnLRP and CP-LRP on TransformerLens models, as hooks that change only the backward pass.

The rules of :mod:`mechinterp.attribution.lrp_rules` are attached with
``model.hooks(fwd_hooks=...)`` for the duration of one forward pass; every hook returns a
tensor with the same values it received (or the tensor itself), so the logits are
bit-identical with the rules on (a test checks it). The relevance of input token ``i`` is
``R_i = Σ_d e_{i,d} g̃_{i,d}``: its token embedding times the modified gradient. The
positional embedding's share is reported in ``metadata["positional_relevance"]``; what is
neither (absorbed by biases and, for AttnLRP, by the softmax rule) is
``metadata["absorbed"]``; for AttnLRP, ``metadata["softmax_absorbed"]`` is the part of it that
the softmax rule absorbed (``Σ R_pattern − Σ R_scores`` summed over layers), so on a model
without biases ``relevance_sum + softmax_absorbed`` equals the target (tested).

Hooks per block (AttnLRP):

====================================  =============================================
``blocks.L.ln1/ln2.hook_scale``,      LayerNorm / RMSNorm scale constant (stop gradient)
``ln_final.hook_scale``
``blocks.L.mlp.hook_pre`` → ``hook_post``  identity rule for the activation function
``mlp.hook_pre``, ``hook_pre_linear``     gated MLP (SwiGLU/GeGLU): identity rule on the
→ ``hook_post``                           gate's activation, uniform rule on the product
``blocks.L.attn.hook_attn_scores``    uniform rule for ``q kᵀ`` (gradient halved)
``blocks.L.attn.hook_z``              uniform rule for ``A v`` (gradient halved)
``hook_q/k/v``, ``hook_attn_out``,    ε-rule stabiliser when ``epsilon > 0``
``mlp.hook_pre(_linear)``,
``hook_mlp_out``
====================================  =============================================

CP-LRP replaces the two attention rules by a stop-gradient on ``hook_pattern`` and holds the
gate of a gated MLP constant. These are the rules of LXT (the AttnLRP authors' library) for
GPT-2 and for Llama / Qwen / Gemma blocks; rotary embeddings are linear in q and k and grouped
key/value heads are a copy, so neither needs a rule (the equality with LXT on a Llama with
rotary attention and grouped-query attention is tested).

Precision: the rules run in the model's dtype; their factors are computed in float32, and
relevances (embedding × modified gradient) are summed in float32, and the scores are float32.
bf16 and fp16 models run (no error); on SmolLM2 in bf16 the largest score differs from the fp32
model's by 1.4% of the largest score, with the same top token (``tests/real/test_lrp.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mechinterp.attribution.base import AbstractAttributionMethod, prepare_prompt, register_method
from mechinterp.attribution.forward import forward_scores, frozen_parameters, token_embeddings
from mechinterp.attribution.lrp_rules import divide_gradient, epsilon_rule, gated_rule, identity_rule, stop_gradient
from mechinterp.attribution.result import TokenAttribution
from mechinterp.errors import MechinterpError, NonFiniteError

__all__ = ["AttnLRP", "CPLRP", "lrp_hooks"]

_LINEAR_OUTPUTS = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "hook_attn_out", "mlp.hook_pre", "mlp.hook_pre_linear",
                   "hook_mlp_out")


def _check_supported(model: Any) -> None:
    names = list(model.hook_dict)
    unsupported = [n for n in names if n.endswith(("hook_mid", "hook_expert_weights")) or ".experts." in n]
    if getattr(model.cfg, "num_experts", None) and not unsupported:
        unsupported = ["num_experts"]
    if unsupported:
        raise MechinterpError(
            f"LRP rules here cover standard MLPs (act_fn(x W_in + b_in) W_out) and gated MLPs (SwiGLU, GeGLU); "
            f"this model has {unsupported[0]} (a SoLU or mixture-of-experts MLP). "
            "Use integrated_gradients or gradient_x_input for it."
        )
    cfg = model.cfg
    special = [flag for flag, on in (("attn_scores_soft_cap", (getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0),
                                     ("use_attention_sinks", bool(getattr(cfg, "use_attention_sinks", False)))) if on]
    if special:
        raise MechinterpError(
            f"LRP rules here do not cover {special[0]} (a non-linearity in attention that LXT handles per model); "
            "use integrated_gradients or gradient_x_input for this model."
        )


def lrp_hooks(model: Any, variant: str = "attn_lrp", epsilon: float = 0.0) -> list[tuple[str, Any]]:
    """The ``(hook_name, fn)`` pairs implementing AttnLRP (``"attn_lrp"``) or CP-LRP (``"cp_lrp"``).

    Use them inside ``with model.hooks(fwd_hooks=lrp_hooks(model)):`` and backpropagate from
    the target: gradient × input is then the LRP relevance.
    """
    if variant not in ("attn_lrp", "cp_lrp"):
        raise MechinterpError(f"Unknown LRP variant {variant!r}; use 'attn_lrp' or 'cp_lrp'.")
    _check_supported(model)
    saved: dict[int, Tensor] = {}
    hooks: list[tuple[str, Any]] = []
    names = list(model.hook_dict)

    def save_pre(value: Tensor, hook: Any) -> Tensor:
        saved[id(hook)] = value
        return epsilon_rule(value, epsilon)

    def post_rule(pre_hook: Any) -> Any:
        def fn(value: Tensor, hook: Any) -> Tensor:
            return identity_rule(saved.pop(id(pre_hook)), value)

        return fn

    def gated_post_rule(pre_hook: Any, linear_hook: Any, act_fn: Any) -> Any:
        def fn(value: Tensor, hook: Any) -> Tensor:
            return gated_rule(saved.pop(id(pre_hook)), saved.pop(id(linear_hook)), value, act_fn, variant)

        return fn

    for name in names:
        if name.endswith("hook_scale"):
            hooks.append((name, lambda value, hook: stop_gradient(value)))
    for layer in range(model.cfg.n_layers):
        prefix = f"blocks.{layer}."
        if variant == "attn_lrp":
            hooks.append((prefix + "attn.hook_attn_scores", lambda value, hook: divide_gradient(value, 2.0)))
            hooks.append((prefix + "attn.hook_z", lambda value, hook: divide_gradient(value, 2.0)))
        else:
            hooks.append((prefix + "attn.hook_pattern", lambda value, hook: stop_gradient(value)))
        pre_name, linear_name = prefix + "mlp.hook_pre", prefix + "mlp.hook_pre_linear"
        if linear_name in model.hook_dict:  # gated MLP: post = act(pre) * pre_linear + b_in
            hooks.append((pre_name, save_pre))
            hooks.append((linear_name, save_pre))
            mlp = model.blocks[layer].mlp
            hooks.append((prefix + "mlp.hook_post", gated_post_rule(model.hook_dict[pre_name], model.hook_dict[linear_name],
                                                                    mlp.act_fn)))
        elif prefix + "mlp.hook_post" in model.hook_dict:
            hooks.append((pre_name, save_pre))
            hooks.append((prefix + "mlp.hook_post", post_rule(model.hook_dict[pre_name])))
        if epsilon > 0:
            for suffix in _LINEAR_OUTPUTS:
                if suffix not in ("mlp.hook_pre", "mlp.hook_pre_linear") and prefix + suffix in model.hook_dict:
                    hooks.append((prefix + suffix, lambda value, hook: epsilon_rule(value, epsilon)))
    return hooks


def _softmax_leak_hooks(model: Any, leak: list[Any]) -> list[tuple[str, Any]]:
    """Hooks that add, during a backward pass, what AttnLRP's softmax rule absorbs to ``leak[0]``:
    ``Σ R_pattern − Σ R_scores`` over every layer, head and query, with ``R = value ⊙ g̃``.

    They must run before the rule hooks: at ``hook_attn_scores`` the gradient is read before the
    uniform rule of ``q kᵀ`` halves it (that halving is conservative, the softmax is not).
    """

    def record(sign: float) -> Any:
        def fn(value: Tensor, hook: Any) -> Tensor:
            if value.requires_grad:
                held = value.detach()

                def add(grad: Tensor) -> None:
                    r = torch.where(torch.isfinite(held), held.double() * grad.double(), 0.0)  # masked scores: -inf × 0
                    leak[0] = leak[0] + sign * r.sum()  # stays on the device: no sync per layer

                value.register_hook(add)
            return value

        return fn

    hooks = []
    for layer in range(model.cfg.n_layers):
        hooks.append((f"blocks.{layer}.attn.hook_pattern", record(1.0)))
        hooks.append((f"blocks.{layer}.attn.hook_attn_scores", record(-1.0)))
    return hooks


class _LRPBase(AbstractAttributionMethod):
    uses_gradients = True
    variant = "attn_lrp"

    non_negative = ("epsilon",)

    def __init__(self, epsilon: float = 0.0) -> None:
        self.epsilon = epsilon

    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        if self.epsilon < 0:
            raise MechinterpError(f"epsilon must be >= 0 (got {self.epsilon}).")
        prep = prepare_prompt(model, prompt, target)
        tokens = prep.batch_tokens
        embed = token_embeddings(model, tokens).detach().requires_grad_(True)
        leaves: dict[str, Tensor] = {}

        def capture_pos(value: Tensor, hook: Any) -> Tensor:
            leaves["pos"] = value.detach().clone().requires_grad_(True)
            return leaves["pos"]

        leak: list[Any] = [0.0]
        hooks = lrp_hooks(model, self.variant, self.epsilon)
        if self.variant == "attn_lrp":  # before the rules: they read the gradient before the q kᵀ halving
            hooks = _softmax_leak_hooks(model, leak) + hooks
        if "hook_pos_embed" in model.hook_dict:
            hooks.append(("hook_pos_embed", capture_pos))
        with torch.enable_grad(), frozen_parameters(model):
            values = forward_scores(model, tokens, prep.target, embed=embed, fwd_hooks=hooks)
            if not torch.isfinite(values).all():
                raise NonFiniteError("The model produced non-finite target scores; check the model and the input.")
            inputs = [embed] + ([leaves["pos"]] if "pos" in leaves else [])
            token_rel, pos_rel, leaks = [], [], []
            for t in range(values.shape[1]):
                leak[0] = 0.0
                grads = torch.autograd.grad(values[0, t], inputs, retain_graph=t < values.shape[1] - 1)
                leaks.append(float(leak[0]))
                token_rel.append((grads[0][0].float() * embed[0].detach().float()).sum(-1))
                pos_rel.append((grads[1][0].float() * inputs[1][0].detach().float()).sum(-1) if len(grads) > 1
                               else torch.zeros_like(token_rel[-1]))
        token_rel_t, pos_rel_t = torch.stack(token_rel), torch.stack(pos_rel)  # [n_targets, pos]
        total = (token_rel_t.sum(-1) + pos_rel_t.sum(-1)).detach().double().cpu()
        vals = values[0].detach().double().cpu()
        meta = {
            "target_values": vals.tolist(),
            "relevance_sum": total.tolist(),
            "absorbed": (vals - total).tolist(),
            "softmax_absorbed": leaks,
            "positional_relevance": pos_rel_t[:, : prep.n_prompt].detach().cpu(),
        }
        return self._result(prep, token_rel_t[:, : prep.n_prompt], meta)


@register_method("attn_lrp", "lrp")
class AttnLRP(_LRPBase):
    """AttnLRP (Achtibat et al., 2024): ε-rule for linear maps, identity rule for the MLP
    activation and the LayerNorm / RMSNorm scale, softmax Taylor rule, uniform rule for the
    attention matmuls and for the product of a gated MLP (SwiGLU, GeGLU).

    Args:
        epsilon: ε of the ε-rule on linear outputs (0: plain gradient; the bias absorbs).

    Example:
        >>> attribute(model, "w1 w2 w3", "w4", method="attn_lrp").scores  # doctest: +SKIP
    """

    variant = "attn_lrp"


@register_method("cp_lrp")
class CPLRP(_LRPBase):
    """CP-LRP (Ali et al., 2022): as AttnLRP, but the attention pattern is a constant
    (q and k detached), so relevance flows through values only, and the gate of a gated MLP
    is a constant (all of the product's relevance goes to the linear branch)."""

    variant = "cp_lrp"
