"""Read a ``.gguf`` file (llama.cpp / ollama) as a Hugging Face model, dequantized.

GGUF is what people have on disk from llama.cpp and ollama: one file with the weights,
usually quantized (Q4_0, Q4_1, Q8_0, K-quants…), the architecture's hyper-parameters and
the tokenizer. ``transformers`` reads it with the ``gguf`` package and dequantizes every
tensor to the requested float dtype; :func:`read_gguf` wraps that and returns what the
TransformerLens conversion needs: a plain (non-quantized) ``PreTrainedModel``, its
tokenizer, and what the file says about itself.

Install the optional dependency with ``pip install "mechinterp[gguf]"``.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mechinterp.errors import ModelLoadError

__all__ = ["GGUFInfo", "gguf_info", "read_gguf"]


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file says about itself.

    Attributes:
        path: the file.
        architecture: ``general.architecture`` (``"llama"``, ``"qwen2"``, ``"gemma3"``…).
        name: ``general.name``, if present.
        file_type: the file's quantization type as llama.cpp names it (``"MOSTLY_Q4_1"``).
        tensor_types: how many tensors are stored in each type (``{"Q4_1": 210, "F32": 61}``).
        add_bos_token: ``tokenizer.ggml.add_bos_token`` (``None`` if the file does not say).
    """

    path: str
    architecture: str | None
    name: str | None
    file_type: str | None
    tensor_types: dict[str, int]
    add_bos_token: bool | None

    @property
    def quantization(self) -> str:
        """A short name of the quantization, e.g. ``"Q4_1"`` (``"F32"`` for unquantized files)."""
        if self.file_type:
            return self.file_type.removeprefix("MOSTLY_")
        return max(self.tensor_types, key=self.tensor_types.get) if self.tensor_types else "unknown"


def _require_gguf() -> Any:
    try:
        import gguf
    except ImportError as err:
        raise ModelLoadError(
            "Reading a .gguf file needs the optional 'gguf' package: pip install \"mechinterp[gguf]\" "
            "(or pip install gguf)."
        ) from err
    return gguf


def gguf_info(path: str | Path) -> GGUFInfo:
    """Read the header of a GGUF file (no weights are dequantized).

    Example:
        >>> info = gguf_info("SmolLM2-135M-Instruct.Q4_1.gguf")  # doctest: +SKIP
        >>> info.architecture, info.quantization  # doctest: +SKIP
        ('llama', 'Q4_1')
    """
    gguf = _require_gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # noqa: BLE001 - any parse failure means "not a GGUF file"
        raise ModelLoadError(f"{path} could not be read as a GGUF file: {type(err).__name__}: {err}") from err

    def field(key: str) -> Any:
        item = reader.fields.get(key)
        if item is None:
            return None
        try:
            return item.contents()
        except Exception:  # noqa: BLE001 - old gguf versions lack contents()
            return None

    file_type = field("general.file_type")
    if file_type is not None:
        try:
            file_type = gguf.LlamaFileType(int(file_type)).name
        except ValueError:
            file_type = str(file_type)
    add_bos = field("tokenizer.ggml.add_bos_token")
    return GGUFInfo(
        path=str(path),
        architecture=field("general.architecture"),
        name=field("general.name"),
        file_type=file_type,
        tensor_types=dict(Counter(t.tensor_type.name for t in reader.tensors)),
        add_bos_token=None if add_bos is None else bool(add_bos),
    )


def read_gguf(path: str | Path, *, dtype: torch.dtype = torch.float32) -> tuple[Any, Any, GGUFInfo]:
    """Dequantize a GGUF file into a Hugging Face causal LM and its tokenizer, offline.

    Args:
        path: the ``.gguf`` file.
        dtype: the float dtype the weights are dequantized to.

    Returns:
        ``(hf_model, tokenizer, info)``; ``hf_model`` is an ordinary ``PreTrainedModel``
        (its config has no ``quantization_config``), so it converts like any checkpoint.

    Raises:
        ModelLoadError: the ``gguf`` package is missing, the file is not GGUF, or
            ``transformers`` cannot read its architecture.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist or is not a file.")
    info = gguf_info(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(gguf_file=path.name, local_files_only=True)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # transformers' per-tensor progress bar
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), **kwargs)
            quantized = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=dtype, **kwargs)
    except (ValueError, KeyError, OSError, NotImplementedError, RuntimeError) as err:
        raise ModelLoadError(
            f"transformers could not read {path.name} (architecture {info.architecture!r}): "
            f"{type(err).__name__}: {err}. transformers reads GGUF files of the llama, mistral, qwen2, "
            "qwen3, gemma2/3, phi3, gpt2, falcon, stablelm and starcoder2 families among others."
        ) from err
    # The result refuses save_pretrained and carries a quantization_config; rebuild it plain.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    del quantized
    plain.eval()
    return plain, tokenizer, info
