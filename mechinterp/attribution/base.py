"""The attribution interface: an abstract method class, the method registry, ``attribute()``.

Every method is a small class with hyper-parameters in ``__init__`` (stored as they are,
scikit-learn style) and one abstract method, :meth:`AbstractAttributionMethod.attribute`
``(model, prompt, target) -> TokenAttribution``. Classes register themselves in
:data:`METHODS` under a name; :func:`attribute` looks the name up there (a table, not an
if/elif chain), so a new method is one class and one decorator.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from jaxtyping import Int
from torch import Tensor

from mechinterp.attribution.result import TokenAttribution
from mechinterp.attribution.targets import BoundTarget, as_target
from mechinterp.core.deprecation import deprecated_alias
from mechinterp.core.precision import synced_dtype
from mechinterp.core.tokens import tokenize
from mechinterp.core.validation import check_count, check_positive
from mechinterp.errors import EmptyInputError, MechinterpError, NonFiniteError

__all__ = ["AbstractAttributionMethod", "METHODS", "MissingBOSWarning", "Prepared", "attribute", "get_method", "method_names", "prepare_prompt", "register_method"]

#: name -> method class; filled by :func:`register_method`.
METHODS: dict[str, type[AbstractAttributionMethod]] = {}
_ALIASES: dict[str, str] = {}


class MissingBOSWarning(UserWarning):
    """A token-tensor prompt without BOS on a model that prepends BOS to text."""


@dataclass(frozen=True)
class Prepared:
    """A prompt and target resolved for one model: what every method starts from.

    Attributes:
        tokens: ``[pos]`` the full sequence (prompt, then any forced continuation).
        n_prompt: number of prompt positions (the attributed inputs).
        token_strs: the prompt's token strings.
        has_bos: whether position 0 is a prepended BOS token.
        target: the bound target.
    """

    tokens: Int[Tensor, " pos"]
    n_prompt: int
    token_strs: list[str]
    has_bos: bool
    target: BoundTarget

    @property
    def batch_tokens(self) -> Int[Tensor, "1 pos"]:
        return self.tokens.unsqueeze(0)


def prepare_prompt(model: Any, prompt: str | Tensor, target: Any) -> Prepared:
    """Tokenise ``prompt`` (checking it), bind ``target`` and name the tokens.

    Raises:
        EmptyInputError / PromptTooLongError / TokenizationError: bad prompts.
        MultiTokenAnswerError: a target answer that is several tokens.
    """
    if isinstance(prompt, (list, tuple)):
        raise MechinterpError("attribute() explains one prompt at a time: pass a string or a [pos] token tensor, "
                              "and loop over a list of prompts.")
    if isinstance(prompt, Tensor) and prompt.ndim == 2:
        if prompt.shape[0] != 1:
            raise MechinterpError("attribute() explains one prompt at a time: pass a [pos] or [1, pos] token tensor.")
        prompt = prompt[0]
    tokens = tokenize(model, prompt, name="prompt").tokens[0].cpu()
    bound = as_target(target).bind(model, tokens)
    tok = model.tokenizer
    strs = [tok.decode([int(t)]) for t in tokens] if tok is not None else [str(int(t)) for t in tokens]
    bos_id = getattr(tok, "bos_token_id", None) if tok is not None else None
    if (isinstance(prompt, Tensor) and bos_id is not None and model.cfg.default_prepend_bos
            and len(tokens) and int(tokens[0]) != bos_id):
        warnings.warn(MissingBOSWarning(
            f"The token prompt does not start with BOS (id {bos_id}), but this model prepends BOS to text "
            f"(model.cfg.default_prepend_bos): without it F(x) and the attributions change (a different input). "
            f"Add BOS: pass the string, or model.to_tokens(text)[0], or torch.cat([torch.tensor([{bos_id}]), tokens]). "
            f"If no BOS is intended, silence this with warnings.simplefilter('ignore', MissingBOSWarning)."),
            stacklevel=5)  # prepare <- method.attribute <- dtype sync <- attribute() <- the caller
    has_bos = bool(bos_id is not None and int(tokens[0]) == bos_id and (isinstance(prompt, Tensor) or model.cfg.default_prepend_bos))
    return Prepared(bound.tokens.cpu(), bound.n_prompt, strs, has_bos, bound)


#: deprecated old name of :func:`prepare_prompt` (removed in the next release).
prepare = deprecated_alias(prepare_prompt, "mechinterp.attribution.base.prepare", "mechinterp.attribution.base.prepare_prompt")


class AbstractAttributionMethod(ABC):
    """Base class of attribution methods.

    Subclasses set :attr:`name`, take hyper-parameters as keyword arguments in
    ``__init__`` (stored unchanged as attributes of the same name) and implement
    :meth:`attribute`.
    """

    name: ClassVar[str] = ""
    #: hyper-parameters checked before every ``attribute`` call (each raises a MechinterpError naming it):
    #: integers >= 1, finite numbers > 0, finite numbers >= 0.
    counts: ClassVar[tuple[str, ...]] = ()
    positive: ClassVar[tuple[str, ...]] = ()
    non_negative: ClassVar[tuple[str, ...]] = ()
    #: whether the method needs gradients (and so a differentiable model)
    uses_gradients: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every method's ``attribute(model, ...)`` runs in the dtype of the model's weights
        (also after ``model.half()``, see :func:`mechinterp.core.precision.synced_dtype`)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("attribute")
        if own is not None and not getattr(own, "__isabstractmethod__", False) and not getattr(own, "_synced", False):
            cls.attribute = _synced_attribute(own)  # type: ignore[method-assign]

    def check_params(self) -> None:
        """Raise a MechinterpError naming the first hyper-parameter outside its range (see :attr:`counts`)."""
        for key in self.counts:
            check_count(getattr(self, key), key)
        for key in self.positive:
            check_positive(getattr(self, key), key)
        for key in self.non_negative:
            check_positive(getattr(self, key), key, allow_zero=True)

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters, read back from the ``__init__`` signature."""
        params = inspect.signature(type(self).__init__).parameters
        return {k: getattr(self, k) for k in params if k != "self" and hasattr(self, k)}

    @abstractmethod
    def attribute(self, model: Any, prompt: str | Tensor, target: Any) -> TokenAttribution:
        """Attribute ``target`` to the input tokens of ``prompt``.

        Args:
            model: a ``HookedTransformer``.
            prompt: a string (BOS prepended as the model does) or ``[pos]`` token ids.
            target: anything :func:`~mechinterp.attribution.targets.as_target` accepts.
        """

    def _result(self, prep: Prepared, scores: Tensor, metadata: dict[str, Any] | None = None,
                tokens: list[str] | None = None) -> TokenAttribution:
        scores = scores.detach().float().cpu()
        if not torch.isfinite(scores).all():
            raise NonFiniteError(f"{self.name} produced non-finite scores; check the model, the target and the options.")
        options = {k: (_jsonable(v)) for k, v in self.get_params().items()}
        return TokenAttribution(tokens if tokens is not None else prep.token_strs, scores, prep.target.labels,
                                self.name, options, dict(metadata or {}))


def _synced_attribute(fn: Callable[..., TokenAttribution]) -> Callable[..., TokenAttribution]:
    @functools.wraps(fn)
    def attribute(self: AbstractAttributionMethod, model: Any, *args: Any, **kwargs: Any) -> TokenAttribution:
        self.check_params()
        with synced_dtype(model):
            return fn(self, model, *args, **kwargs)

    attribute._synced = True  # type: ignore[attr-defined]
    return attribute


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def register_method(name: str, *aliases: str) -> Callable[[type[AbstractAttributionMethod]], type[AbstractAttributionMethod]]:
    """Class decorator: register an attribution method under ``name`` (and ``aliases``)."""

    def wrap(cls: type[AbstractAttributionMethod]) -> type[AbstractAttributionMethod]:
        cls.name = name
        METHODS[name] = cls
        for alias in aliases:
            _ALIASES[alias] = name
        return cls

    return wrap


def method_names() -> list[str]:
    """Registered method names."""
    return sorted(METHODS)


def get_method(name: str) -> type[AbstractAttributionMethod]:
    """The class registered under ``name`` (or an alias such as ``"ig"``)."""
    key = _ALIASES.get(name, name)
    if key not in METHODS:
        raise MechinterpError(f"Unknown attribution method {name!r}. Valid methods: {method_names()} "
                              f"(aliases: {sorted(_ALIASES)}).")
    return METHODS[key]


def attribute(model: Any, prompt: str | Tensor, target: Any, method: str = "integrated_gradients", *,
              warn: bool = True, **options: Any) -> TokenAttribution:
    """Attribute a target to the input tokens of one prompt with any registered method.

    Args:
        model: a ``HookedTransformer``.
        prompt: a string or ``[pos]`` token ids.
        target: ``" Paris"`` / a token id (next-token logit), ``(" Paris", " Rome")`` (logit
            difference), a function of the logits, or a target object (``NextToken``,
            ``Contrast``, ``Label``, ``Continuation``, ``Generate``, ``MetricTarget``).
        method: a name from :func:`method_names` (``"integrated_gradients"``/``"ig"``,
            ``"saliency"``, ``"gradient_x_input"``, ``"attn_lrp"``, ``"cp_lrp"``,
            ``"occlusion"``, ``"shapley"``, ``"kernel_shap"``, ``"lime"``).
        warn: warn when most attribution mass sits on BOS, punctuation or stop-words.
        **options: the method's hyper-parameters (see its class).

    Returns:
        A :class:`TokenAttribution` with scores ``[n_targets, n_tokens]``.

    Example:
        >>> import mechinterp
        >>> from mechinterp.attribution import attribute
        >>> model = mechinterp.load("zoo:toy-lm")  # doctest: +SKIP
        >>> res = attribute(model, "The capital of France is", " Paris", method="ig", n_steps=32)  # doctest: +SKIP
        >>> res.metadata["convergence_delta"]  # doctest: +SKIP
    """
    cls = get_method(method)
    try:
        instance = cls(**options)
    except TypeError as err:
        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise MechinterpError(f"Bad options for method {cls.name!r}: {err}. Valid options: {params}.") from None
    if isinstance(prompt, str) and not prompt.strip():
        raise EmptyInputError("The prompt is empty: pass at least one token of text.")
    result = instance.attribute(model, prompt, target)
    if warn:
        from mechinterp.attribution.grouping import diagnose

        diagnose(result, warn=True)
    return result

