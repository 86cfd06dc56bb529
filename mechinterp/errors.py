"""The error hierarchy.

Every error the toolkit raises on bad input is a :class:`MechinterpError`, and its
message says what was wrong *and what to do about it*. Catch ``MechinterpError`` to
handle all of them; the subclasses let code react to one kind.
"""

from __future__ import annotations

__all__ = [
    "MechinterpError",
    "UnknownSiteError",
    "TokenizationError",
    "MultiTokenAnswerError",
    "UnknownTokenError",
    "VocabularyMismatchError",
    "LeadingSpaceError",
    "PromptTooLongError",
    "EmptyInputError",
    "ModelLoadError",
    "OfflineError",
    "ShapeMismatchError",
    "NonFiniteError",
    "DistributedError",
]


class MechinterpError(Exception):
    """Base class of every error raised by mechinterp on bad input or bad state."""


class UnknownSiteError(MechinterpError, KeyError):
    """A site or hook name that the model does not have."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class TokenizationError(MechinterpError):
    """Text that cannot be tokenised the way a method needs."""


class MultiTokenAnswerError(TokenizationError):
    """An answer string that is more than one token for this tokenizer."""


class UnknownTokenError(TokenizationError):
    """Text that a word-level tokenizer maps to its unknown token (``<unk>``)."""


class VocabularyMismatchError(TokenizationError):
    """Token ids or a task made for another model's vocabulary."""


class LeadingSpaceError(TokenizationError):
    """An answer whose form without a leading space is not the token a model continues with."""


class PromptTooLongError(TokenizationError):
    """A prompt with more tokens than the model's context window ``n_ctx``."""


class EmptyInputError(MechinterpError):
    """An empty prompt list, an empty prompt, or an empty selection."""


class ShapeMismatchError(MechinterpError):
    """Inputs that must line up (clean/corrupted, prompts/answers) do not."""


class NonFiniteError(MechinterpError):
    """NaN or infinite values where finite numbers are required."""


class ModelLoadError(MechinterpError):
    """A model that cannot be found or converted."""


class OfflineError(ModelLoadError):
    """A model that needs the network, asked for on a machine without it."""


class DistributedError(MechinterpError):
    """A data-parallel run that cannot work as asked: a bad launch, or a method or input that cannot be sharded."""
