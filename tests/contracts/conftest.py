"""Fixtures of the cross-method contracts: the good arguments every entry point draws from (one per session)."""


from __future__ import annotations

import pytest

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import mechinterp
from mechinterp import attribution as T
from mechinterp import circuits as C
from mechinterp import probes as PR
from mechinterp import tasks

WORDS = [f"w{i}" for i in range(45)]
OTHER_WORDS = [f"v{i}" for i in range(45)]  # same d_vocab, other tokens: ids mean other words


# --- the context every entry point draws its good arguments from ------------------------------


@dataclass
class Ctx:
    model: Any
    other: Any
    tmp: Path
    t1: torch.Tensor = field(init=False)
    t2: torch.Tensor = field(init=False)
    x2: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        bos = self.model.tokenizer.bos_token_id
        self.t1 = torch.tensor([bos, 5, 6, 7, 8, 9])
        self.t2 = torch.stack([self.t1, torch.tensor([bos, 9, 8, 7, 6, 5])])
        self.x2 = self.t2.clone()
        self.x2[:, 2] = 20
        self.task = tasks.load("induction", self.model, n=3, seed=0, seq_len=4)
        self.other_task = tasks.load("induction", self.other, n=3, seed=0, seq_len=4)
        self.pair_task = tasks.from_pairs(self.model, ["w1 w2 w3", "w4 w2 w3", "w1 w5 w3", "w4 w5 w3"], ["w6 w2 w3"] * 4,
                                          ["w7"] * 4, ["w8"] * 4, labels={"y": [0, 1, 0, 1]})
        self.setup = C.setup_for(self.model, self.task)
        self.graph = self.setup.graph
        self.circuit = C.discover(self.model, self.task, "eap", setup=self.setup)
        self.data = PR.collect_activations(self.model, self.t2.repeat(4, 1), [0, 1] * 4, progress=False)
        self.saliency = T.attribute(self.model, self.t1, 4, method="saliency", warn=False)
        self.zoo = Path(mechinterp.zoo.path("attn-only-2l"))

    @staticmethod
    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -1, 4] - logits[:, -1, 5]


def _model(words: list[str], folder: Path) -> Any:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp.zoo.tokenizer import word_tokenizer

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=len(words) + 3,
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
    )
    torch.manual_seed(0)
    model = HookedTransformer(cfg, tokenizer=word_tokenizer(words, folder))
    return model.eval()



@pytest.fixture(scope="session")
def ctx(tmp_path_factory):
    """Good arguments for every entry point on a tiny model, and a second model of the same size with other words."""
    root = tmp_path_factory.mktemp("contracts")
    return Ctx(_model(WORDS, root / "tok"), _model(OTHER_WORDS, root / "other"), root)
