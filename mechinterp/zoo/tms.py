"""The zoo's toy model of superposition (Elhage et al. 2022): known feature directions for SAEs to recover.

``n`` sparse features ``x ∈ [0, 1]^n`` (each non-zero with probability ``p``, uniform magnitude)
are compressed into ``d < n`` hidden dimensions and read back::

    h = W x          (W: [d, n])
    x' = ReLU(Wᵀ h + b)

trained to minimise ``E‖x - x'‖²`` (every feature equally important). With sparse features
the model stores more features than dimensions, each along its own column ``W[:, i]``: the
ground truth that a sparse autoencoder trained on ``h`` must recover
(:func:`~mechinterp.dictionary.match_directions`). A feature whose column has norm under
0.5 is not represented and is left out of the ground truth.

The shipped model (``superposition/``: ``config.json``, ``model.safetensors``, ``card.md``) is
trained by ``python -m mechinterp.zoo.train.tms``.

Example:
    >>> from mechinterp.zoo.tms import load_tms
    >>> tms = load_tms()
    >>> x, h = tms.sample(1000, seed=0)
    >>> h.shape[-1] < x.shape[-1]  # more features than dimensions
    True
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from mechinterp.errors import MechinterpError

__all__ = ["ToyModelOfSuperposition", "load_tms", "TMS_DIR"]

#: where the shipped model lives
TMS_DIR = Path(__file__).parent / "superposition"


class ToyModelOfSuperposition(nn.Module):
    """``x' = ReLU(Wᵀ W x + b)`` with ``n_features`` inputs and ``d_hidden`` hidden dimensions.

    Args:
        n_features: number of sparse features ``n``.
        d_hidden: hidden width ``d`` (``< n`` for superposition).
        feature_probability: the chance each feature is non-zero in a sample.
    """

    def __init__(self, n_features: int, d_hidden: int, feature_probability: float) -> None:
        super().__init__()
        if not 0 < feature_probability <= 1:
            raise MechinterpError(f"feature_probability must lie in (0, 1], got {feature_probability!r}.")
        self.n_features, self.d_hidden, self.feature_probability = n_features, d_hidden, feature_probability
        self.W = nn.Parameter(torch.nn.init.xavier_normal_(torch.empty(d_hidden, n_features)))
        self.b = nn.Parameter(torch.zeros(n_features))

    def hidden(self, x: Float[Tensor, "... n"]) -> Float[Tensor, "... d"]:
        """``h = W x``."""
        return x @ self.W.T

    def forward(self, x: Float[Tensor, "... n"]) -> Float[Tensor, "... n"]:
        return torch.relu(self.hidden(x) @ self.W + self.b)

    def sample(self, n_samples: int, seed: int = 0) -> tuple[Float[Tensor, "N n"], Float[Tensor, "N d"]]:
        """``n_samples`` sparse feature vectors and their hidden activations (no gradient)."""
        g = torch.Generator().manual_seed(seed)
        present = torch.rand(n_samples, self.n_features, generator=g) < self.feature_probability
        x = present * torch.rand(n_samples, self.n_features, generator=g)
        with torch.no_grad():
            return x, self.hidden(x.to(self.W.dtype))

    def represented(self) -> Bool[Tensor, " n"]:
        """Features the model stores (column norm at least 0.5)."""
        return self.W.detach().norm(dim=0) >= 0.5

    def feature_directions(self) -> Float[Tensor, "n_represented d"]:
        """Unit directions of the represented features in the hidden space: the ground truth."""
        w = self.W.detach()[:, self.represented()].T
        return w / w.norm(dim=-1, keepdim=True)


def load_tms(folder: str | Path | None = None) -> ToyModelOfSuperposition:
    """The shipped toy model of superposition (or one saved by the training script in ``folder``)."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else TMS_DIR
    try:
        cfg = json.loads((folder / "config.json").read_text())
        state = load_file(str(folder / "model.safetensors"))
    except FileNotFoundError as err:
        raise MechinterpError(f"No toy model of superposition in {folder}; train one with "
                              "`python -m mechinterp.zoo.train.tms --out <folder>`.") from err
    model = ToyModelOfSuperposition(cfg["n_features"], cfg["d_hidden"], cfg["feature_probability"])
    model.load_state_dict(state)
    return model.requires_grad_(False)
