"""Hand-checkable toy tokenizer and model shared by the evaluation tests.

One token per character and logits from two lookup tables, so every
log-probability in a test can be worked out by hand.
"""

import string
from types import SimpleNamespace

import torch
from torch import nn

ALPHABET = string.printable  # 100 characters -> ids 2..101


class ToyTokenizer:
    """One token per character; BOS=0, EOS=1."""

    bos_id = 0
    eos_id = 1
    vocab_size = 2 + len(ALPHABET)

    def encode(self, text, bos=True, eos=False):
        ids = [2 + ALPHABET.index(ch) for ch in text]
        return ([0] if bos else []) + ids + ([1] if eos else [])

    def decode(self, ids):
        return "".join(ALPHABET[i - 2] for i in ids if i >= 2)


TOK = ToyTokenizer()


def tid(ch):
    return TOK.encode(ch, bos=False)[0]


class ToyModel(nn.Module):
    """Logits = bigram[current token] + first[first token after BOS]: hand-checkable.

    Causal: position 0 (BOS) has not seen the first token yet, so it gets no ``first`` term.
    """

    def __init__(self, max_seq_len=64):
        super().__init__()
        v = TOK.vocab_size
        self.bigram = nn.Parameter(torch.zeros(v, v))
        self.first = nn.Parameter(torch.zeros(v, v))
        self.config = SimpleNamespace(max_seq_len=max_seq_len)

    def forward(self, tokens):
        assert tokens.shape[1] <= self.config.max_seq_len
        anchor = tokens[:, min(1, tokens.shape[1] - 1)]
        seen = (torch.arange(tokens.shape[1]) >= 1).float()[None, :, None]
        return self.bigram[tokens] + self.first[anchor][:, None, :] * seen


def tiny_transformer(vocab_size, max_seq_len=32, n_layers=2):
    """A small real ``Transformer``, seeded, for tests that need the KV-cache model."""
    from llamaforge.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=32,
        n_layers=n_layers,
        n_heads=4,
        vocab_size=vocab_size,
        max_seq_len=max_seq_len,
        multiple_of=16,
    )
    return Transformer(cfg)


def count_rows(model):
    """Record (batch, seq) of every forward call of ``model``."""
    shapes = []
    model.register_forward_hook(
        lambda mod, args, kwargs, out: shapes.append(tuple(args[0].shape)), with_kwargs=True
    )
    return shapes
