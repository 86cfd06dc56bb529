"""The shared activation cache: the one store every method reads activations from.

TransformerLens's ``run_with_cache`` caches every hook of one batch in memory. Research on
datasets needs more, and :class:`SharedCache` adds it:

* **short site names** — ``cache["resid_post", 3]``, ``cache.stack("pattern")``;
* **datasets** — prompts are tokenised once, run in batches with a progress bar, padded
  (right by default, left supported) with the padding kept out of the results;
* **position selection** — keep every position, only the last real token, given
  indices (negative ones count back from each prompt's own end), or a weighted sum over
  each prompt's positions (e.g. a span mean) taken batch by batch, so that the full
  ``[n, pos, ...]`` activation is never stored;
* **a memory budget** — sites that would push the in-memory total past it are written to
  ``.npy`` files batch by batch and read back through memory maps, transparently;
* **memoisation** — a site already cached costs no forward pass; new sites are collected
  together in one pass over the data that stops after the deepest layer needed.

Example:
    >>> import mechinterp
    >>> model = mechinterp.load("zoo:attn-only-2l")
    >>> cache = mechinterp.SharedCache(model, ["t1 t2 t3 t1 t2", "t4 t5 t4"], positions="last")
    >>> cache["resid_post", 1].shape  # doctest: +SKIP
    torch.Size([2, 64])
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from mechinterp.core.fastpath import tl_flags
from mechinterp.core.precision import runs_synced_method
from mechinterp.core.validation import check_count, check_task, check_token_ids, check_writable_dir
from mechinterp.core.sites import SiteSpec, layer_of, position_dim, resolve, resolve_many
from mechinterp.core.storage import AbstractStore, DiskStore, MemoryStore, parse_bytes
from mechinterp.core.tokens import Prompts, Tokenized, tokenize
from mechinterp.errors import EmptyInputError, MechinterpError, PromptTooLongError

__all__ = ["SharedCache"]

Positions = Literal["all", "last"] | Sequence[int] | Tensor


class SharedCache:
    """Activations of one model on one set of prompts, collected lazily and memoised.

    Args:
        model: a ``HookedTransformer``.
        prompts: text prompts, token ids ``[batch, pos]`` (taken as unpadded), a
            :class:`Tokenized` batch, or a task (its clean prompts, padding respected).
        positions: ``"all"`` (every position, padded to the longest prompt; see
            :attr:`attention_mask`), ``"last"`` (each prompt's last real token; the
            position dimension is dropped), or a list of indices per prompt (negative
            indices count from each prompt's end; ``[0, -1]`` = first and last token),
            or a float tensor of weights ``[n_prompts, pos]`` over the padded positions
            (zero at padding): each prompt's weighted sum over positions, reduced per batch
            (only ``[n_prompts, ...]`` is stored; the position dimension is dropped).
            For attention patterns the selection applies to the query position.
        batch_size: prompts per forward pass.
        memory_budget: bytes (or ``"2GB"``) of activations to hold in memory; sites that
            would exceed it go to disk. ``None``: no limit.
        store_device: where in-memory activations are kept: ``"cpu"`` (default), or
            ``"model"`` / a device to keep them where the model runs (no host copy and no
            synchronisation per batch on a GPU; the budget then counts that device's
            memory). Spilled sites always go to disk.
        spill_dir: the folder under which spilled sites are written (the system's temporary
            folder by default). The cache writes only inside its own new subfolder
            ``mechinterp-cache-<pid>-<random>`` there and deletes that subfolder on
            :meth:`close`, when the cache is garbage-collected, or at interpreter exit; nothing
            else in ``spill_dir`` is touched. A process killed with SIGKILL cannot clean up: the
            next cache that spills into the same folder removes subfolders left by processes
            that no longer run.
        prepend_bos, padding_side: tokenisation, see :func:`~mechinterp.core.tokens.tokenize`.
        progress: show a progress bar (default: when there is more than one batch).

    Attributes:
        inputs: the tokenised prompts.
        n_forward_passes: passes over the dataset run so far (0 after a cache hit).
        n_batches_run: forward calls run so far.
        last_stop_at_layer: the ``stop_at_layer`` of the latest pass (``None`` = full model).
    """

    def __init__(
        self,
        model: Any,
        prompts: Prompts | Tokenized,
        *,
        positions: Positions = "all",
        batch_size: int = 32,
        memory_budget: int | float | str | None = None,
        spill_dir: str | Path | None = None,
        prepend_bos: bool | None = None,
        padding_side: Literal["left", "right"] = "right",
        progress: bool | None = None,
        store_device: str | torch.device = "cpu",
    ) -> None:
        check_count(batch_size, "batch_size")
        if spill_dir is not None:
            check_writable_dir(spill_dir, "spill_dir")
        self.model = model
        if isinstance(prompts, Tokenized):
            check_token_ids(model, prompts.tokens, "prompts")
        if hasattr(prompts, "clean_tokens") and hasattr(prompts, "lengths"):  # a mechinterp.tasks.Task
            check_task(model, prompts, "prompts")
            tokens, lengths = prompts.clean_tokens, prompts.lengths
            mask = (torch.arange(tokens.shape[1])[None, :] < lengths[:, None]).long()
            prompts = Tokenized(tokens, mask, lengths, "right")
        self.inputs = prompts if isinstance(prompts, Tokenized) else tokenize(
            model, prompts, prepend_bos=prepend_bos, padding_side=padding_side
        )
        if self.inputs.tokens.shape[1] > model.cfg.n_ctx:
            raise PromptTooLongError(f"Inputs have {self.inputs.tokens.shape[1]} positions; n_ctx is {model.cfg.n_ctx}.")
        self.positions = positions
        self.batch_size = batch_size
        self.memory_budget = parse_bytes(memory_budget)
        try:
            self.store_device = torch.device(model.cfg.device if str(store_device) == "model" else store_device)
        except (RuntimeError, TypeError) as err:
            raise MechinterpError(f"store_device must be 'cpu', 'model' or a torch device, got {store_device!r}.") from err
        self.progress = progress
        self._spill_root = Path(spill_dir) if spill_dir is not None else None
        self._spill_dir: Path | None = None  # this cache's own subfolder, made at the first spill
        self._cleanup: weakref.finalize | None = None
        self._stores: dict[str, AbstractStore] = {}
        self._index = self._position_index()
        self._unpadded = bool(self.inputs.attention_mask.all())
        self.n_forward_passes = 0
        self.n_batches_run = 0
        self.last_stop_at_layer: int | None = None

    # ----------------------------------------------------------------- properties
    @property
    def tokens(self) -> Int[Tensor, "batch pos"]:
        return self.inputs.tokens

    @property
    def attention_mask(self) -> Int[Tensor, "batch pos"]:
        return self.inputs.attention_mask

    @property
    def lengths(self) -> Int[Tensor, " batch"]:
        return self.inputs.lengths

    def __len__(self) -> int:
        return len(self.inputs)

    def keys(self) -> list[str]:
        """Hook names cached so far."""
        return list(self._stores)

    def __contains__(self, key: object) -> bool:
        try:
            return all(n in self._stores for n in resolve(self.model, key))  # type: ignore[arg-type]
        except MechinterpError:
            return False

    @property
    def spilled(self) -> list[str]:
        """Hook names whose activations live on disk."""
        return [name for name, store in self._stores.items() if store.on_disk]

    @property
    def memory_bytes(self) -> int:
        """Bytes of activations held in memory (spilled sites excluded)."""
        return sum(store.nbytes for store in self._stores.values() if not store.on_disk)

    def str_tokens(self, i: int) -> list[str]:
        """The string tokens of prompt ``i``, padding excluded."""
        row = self.inputs.tokens[i][self.inputs.attention_mask[i].bool()]
        return list(self.model.to_str_tokens(row))

    # -------------------------------------------------------------------- reading
    def get(self, site: SiteSpec, layer: int | None = None) -> Tensor:
        """The cached activation at one site (collected first if needed).

        Args:
            site: a short name with ``layer``, a ``(name, layer)`` tuple, or a hook name.
            layer: the layer for a short per-layer name.

        Returns:
            ``[n_prompts, ...]``: the hook's shape with batch = all prompts and the
            position dimension selected as ``positions`` says.
        """
        names = resolve(self.model, site, layer)
        if len(names) != 1:
            raise MechinterpError(
                f"{site!r} names {len(names)} hooks (one per layer): pass a layer, or use cache.stack({site!r})."
            )
        self.fetch(names)
        return self._stores[names[0]].read()

    def __getitem__(self, key: SiteSpec) -> Tensor:
        return self.get(key)

    def stack(self, site: str, layers: Iterable[int] | None = None) -> Tensor:
        """One site over several layers (default all), stacked: ``[layer, n_prompts, ...]``."""
        names = resolve_many(self.model, site, layers)
        self.fetch(names)
        return torch.stack([self._stores[n].read() for n in names])

    def to_tl_cache(self, sites: SiteSpec | Iterable[SiteSpec] | None = None) -> Any:
        """The cached sites as a TransformerLens ``ActivationCache`` (e.g. for ``decompose_resid``)."""
        from transformer_lens import ActivationCache

        if sites is not None:
            self.fetch(resolve_many(self.model, sites))
        return ActivationCache({name: store.read() for name, store in self._stores.items()}, self.model)

    # ----------------------------------------------------------------- collecting
    def fetch(self, sites: SiteSpec | Iterable[SiteSpec], layers: int | Iterable[int] | None = None) -> list[str]:
        """Make sure ``sites`` are cached; run one pass for those that are not.

        Returns:
            The hook names, now all cached.
        """
        names = resolve_many(self.model, sites, layers) if not _all_hook_names(self.model, sites) else list(sites)  # type: ignore[arg-type]
        missing = list(dict.fromkeys(n for n in names if n not in self._stores))  # a site named twice is cached once
        if missing:
            self._collect(missing)
        return names

    @runs_synced_method
    def _collect(self, names: list[str]) -> None:
        layers = [layer_of(n) for n in names]
        embed_only = all(l is not None or n in ("hook_embed", "hook_pos_embed", "hook_tokens") for n, l in zip(names, layers))
        stop = max((l for l in layers if l is not None), default=-1) + 1 if embed_only else None
        n = len(self.inputs)
        n_batches = math.ceil(n / self.batch_size)
        show = self.progress if self.progress is not None else n_batches > 1
        new: dict[str, AbstractStore] = {}
        with ExitStack() as stack, torch.inference_mode():
            stack.enter_context(tl_flags(self.model, names))
            bar = tqdm(total=n, desc=f"caching {len(names)} site(s)", disable=not show, unit="prompt", leave=False)
            stack.callback(bar.close)
            for start in range(0, n, self.batch_size):
                rows = slice(start, min(n, start + self.batch_size))
                tokens, kwargs, offset = self._batch(rows)
                captured: dict[str, Tensor] = {}

                def hook(act: Tensor, hook: Any) -> None:
                    captured[hook.name] = act

                with self.model.hooks(fwd_hooks=[(name, hook) for name in names]):
                    self.model(tokens, stop_at_layer=stop, **kwargs)
                self.n_batches_run += 1
                for name in names:
                    if name not in captured:
                        raise MechinterpError(f"The hook {name!r} did not fire in a forward pass of this model.")
                    block = self._select(name, captured[name], rows, offset)
                    if name not in new:
                        new[name] = self._allocate(name, tuple(block.shape[1:]), block.dtype, pending=new)
                    new[name].append(block)
                bar.update(rows.stop - rows.start)
        self._stores.update(new)
        self.n_forward_passes += 1
        self.last_stop_at_layer = stop

    def _batch(self, rows: slice) -> tuple[Tensor, dict[str, Any], int]:
        """The batch's tokens trimmed to its own longest prompt, forward kwargs, left offset."""
        device = self.model.cfg.device
        width = int(self.inputs.lengths[rows].max())
        full = self.inputs.tokens.shape[1]
        if self.inputs.padding_side == "left":
            offset = full - width
            tokens = self.inputs.tokens[rows, offset:]
            mask = self.inputs.attention_mask[rows, offset:]
            return tokens.to(device), {"attention_mask": mask.to(device), "padding_side": "left"}, offset
        return self.inputs.tokens[rows, :width].to(device), {}, 0

    def _position_index(self) -> Tensor | None:
        """Per prompt, the (padded-batch) indices to keep: ``[n, k]`` (or the weights ``[n, pos]``), ``None`` for all."""
        if isinstance(self.positions, Tensor) and self.positions.is_floating_point():
            weights = self.positions.detach().cpu()
            if weights.shape != self.inputs.tokens.shape:
                raise MechinterpError(f"Position weights must be [n_prompts, pos] = {tuple(self.inputs.tokens.shape)}, "
                                      f"got {tuple(weights.shape)}.")
            if bool((weights * (1 - self.inputs.attention_mask)).any()) or not bool(torch.isfinite(weights).all()):
                raise MechinterpError("Position weights must be finite and zero at padding positions.")
            return weights
        if isinstance(self.positions, str):
            if self.positions == "all":
                return None
            if self.positions == "last":
                return self.inputs.last_pos.unsqueeze(1)
            raise MechinterpError(f"positions must be 'all', 'last' or a list of indices, got {self.positions!r}.")
        wanted = torch.as_tensor(list(self.positions), dtype=torch.long)
        if wanted.numel() == 0:
            raise EmptyInputError("positions is an empty list: give at least one index, 'last' or 'all'.")
        lengths = self.inputs.lengths.unsqueeze(1)
        relative = torch.where(wanted < 0, wanted + lengths, wanted.expand_as(lengths.expand(-1, len(wanted))))
        bad = (relative < 0) | (relative >= lengths)
        if bad.any():
            i = int(bad.any(1).nonzero()[0])
            raise MechinterpError(
                f"Position indices {list(self.positions)} fall outside prompt {i}, which has {int(lengths[i])} tokens."
            )
        if self.inputs.padding_side == "left":
            relative = relative + (self.inputs.tokens.shape[1] - lengths)
        return relative

    def _select(self, name: str, act: Tensor, rows: slice, offset: int) -> Tensor:
        """Keep the wanted positions of one batch's activation and pad to the dataset width."""
        dim = position_dim(name)
        full = self.inputs.tokens.shape[1]
        act = act.detach()
        if self._index is None:
            if self._unpadded:  # nothing to zero or pad: the activation as it is
                return act
            mask = self.inputs.attention_mask[rows, offset : offset + act.shape[dim]].to(act.device)
            return _pad_positions(name, _zero_padding(name, act, mask), full, left=self.inputs.padding_side == "left")
        if self._index.is_floating_point():  # weighted sum over positions, e.g. a span mean
            weights = self._index[rows, offset : offset + act.shape[dim]].to(act.device, act.dtype)
            picked = torch.einsum("bp,bp...->b...", weights, act.movedim(dim, 1))
            if name.endswith(("hook_pattern", "hook_attn_scores")):  # key positions too
                picked = _pad_dim(picked, picked.ndim - 1, full, left=self.inputs.padding_side == "left")
            return picked
        index = (self._index[rows] - offset).to(act.device)  # [b, k] in batch coordinates
        shape = [index.shape[0]] + [1] * (act.ndim - 1)
        shape[dim] = index.shape[1]
        gather_index = index.view(shape).expand(*[s if i != dim else index.shape[1] for i, s in enumerate(act.shape)])
        picked = act.gather(dim, gather_index)
        if self.positions == "last":
            picked = picked.squeeze(dim)
        if name.endswith(("hook_pattern", "hook_attn_scores")):  # key positions too
            picked = _pad_dim(picked, picked.ndim - 1, full, left=self.inputs.padding_side == "left")
        return picked

    def _allocate(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, pending: dict[str, AbstractStore]) -> AbstractStore:
        n = len(self.inputs)
        in_memory = self.memory_bytes + sum(s.nbytes for s in pending.values() if not s.on_disk)
        size = n * math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if in_memory + size <= self.memory_budget:
            return MemoryStore(n, shape, dtype, self.store_device)
        return DiskStore(n, shape, dtype, self._spill_path(name))

    def _spill_path(self, name: str) -> Path:
        if self._spill_dir is None:
            self._spill_dir = _new_spill_folder(self._spill_root)
            self._cleanup = weakref.finalize(self, _remove_spill_folder, self._spill_dir)
        return self._spill_dir / f"{name}.npy"

    @property
    def spill_folder(self) -> Path | None:
        """The subfolder this cache spills to (``None`` until a site is spilled, and after :meth:`close`)."""
        return self._spill_dir

    def close(self) -> None:
        """Forget the cached sites and delete this cache's spill subfolder (idempotent).

        Tensors already read from spilled sites stay valid on Linux and macOS (the memory
        maps outlive the files); read again after ``close`` and the sites are recomputed.
        """
        for store in self._stores.values():
            file = getattr(store, "_file", None)
            if file is not None and not file.closed:
                file.close()
        self._stores.clear()
        if self._cleanup is not None:
            self._cleanup()
        self._spill_dir, self._cleanup = None, None

    def __enter__(self) -> SharedCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        positions = "weights" if isinstance(self.positions, Tensor) else repr(self.positions)
        return (
            f"SharedCache({len(self)} prompts, positions={positions}, cached={len(self._stores)} site(s), "
            f"in memory={self.memory_bytes / 1e6:.1f} MB, on disk={len(self.spilled)} site(s))"
        )


_SPILL_PREFIX = "mechinterp-cache-"


def _new_spill_folder(root: Path | None) -> Path:
    """A new, uniquely named ``mechinterp-cache-<pid>-<random>`` folder under ``root`` (or the temp folder)."""
    if root is not None:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise MechinterpError(f"Cannot create spill_dir {str(root)!r} ({err.strerror}); pass a folder you can write to.") from err
    base = root if root is not None else Path(tempfile.gettempdir())
    _remove_stale_spill_folders(base)
    try:
        return Path(tempfile.mkdtemp(prefix=f"{_SPILL_PREFIX}{os.getpid()}-", dir=base))
    except OSError as err:
        raise MechinterpError(f"Cannot write spilled activations under {str(base)!r} ({err.strerror}); pass spill_dir= "
                              "a folder you can write to.") from err


def _remove_spill_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_spill_folders(base: Path) -> None:
    """Delete ``mechinterp-cache-<pid>-*`` folders in ``base`` whose process no longer runs (a killed run)."""
    pattern = re.compile(re.escape(_SPILL_PREFIX) + r"(\d+)-[A-Za-z0-9_]+")
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or cannot tell: keep it
    return True


def _all_hook_names(model: Any, sites: Any) -> bool:
    return isinstance(sites, (list, tuple)) and all(isinstance(s, str) and s in model.hook_dict for s in sites)


def _zero_padding(name: str, act: Tensor, mask: Tensor) -> Tensor:
    """Zero the entries at padding positions (``mask`` is ``[batch, pos]``, 1 = real token)."""
    if name.endswith(("hook_pattern", "hook_attn_scores")):
        keep = (mask[:, None, :, None] * mask[:, None, None, :]).bool()
    else:
        keep = mask.view(*mask.shape, *([1] * (act.ndim - 2))).bool()
    return torch.where(keep, act, torch.zeros((), dtype=act.dtype, device=act.device))


def _pad_dim(x: Tensor, dim: int, width: int, left: bool) -> Tensor:
    missing = width - x.shape[dim]
    if missing <= 0:
        return x
    pad_shape = list(x.shape)
    pad_shape[dim] = missing
    zeros = x.new_zeros(pad_shape)
    return torch.cat([zeros, x] if left else [x, zeros], dim=dim)


def _pad_positions(name: str, act: Tensor, width: int, left: bool) -> Tensor:
    dims = [2, 3] if name.endswith(("hook_pattern", "hook_attn_scores")) else [1]
    for dim in dims:
        act = _pad_dim(act, dim, width, left)
    return act
