from pathlib import Path

import pytest
import torch

from llamaforge.model import ModelConfig, Transformer, build_model

TINY = ModelConfig(
    dim=64, n_layers=2, n_heads=4, vocab_size=128, multiple_of=16, max_seq_len=64, name="tiny"
)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    return TINY


def random_model(cfg: ModelConfig = TINY, seed: int = 0) -> Transformer:
    """A model whose norms are random too, so a swapped or dropped tensor changes the logits."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model


@pytest.fixture
def tiny_model() -> Transformer:
    return random_model()


@pytest.fixture
def tokens() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, TINY.vocab_size, (2, 12), generator=generator)


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory) -> Path:
    """A real SentencePiece BPE model (vocab 100 <= the tiny model's 128), trained in ~0.1 s."""
    spm = pytest.importorskip("sentencepiece")
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    lines = [
        f"the quick brown fox jumps over the lazy dog {i} times, said Alice." for i in range(300)
    ]
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tok"),
        vocab_size=100,
        model_type="bpe",
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    return folder / "tok.model"
