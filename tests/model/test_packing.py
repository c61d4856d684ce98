"""Packed examples (``documents``) are computed exactly as if each sat alone."""

from __future__ import annotations

import torch

from llamaforge.model import ModelConfig, build_model
from llamaforge.model.transformer import document_positions


def tiny_model():
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, vocab_size=50, multiple_of=16, max_seq_len=32)
    return build_model(cfg).eval()


def test_positions_restart_per_document() -> None:
    docs = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2]])
    assert document_positions(docs).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]


@torch.no_grad()
def test_packed_logits_equal_each_example_alone_and_do_not_leak() -> None:
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    lengths = [5, 7, 4]
    examples = [torch.randint(0, 50, (n,), generator=g) for n in lengths]
    packed = torch.cat(examples).unsqueeze(0)
    documents = torch.cat([torch.full((n,), d) for d, n in enumerate(lengths)]).unsqueeze(0)
    out = model(packed, documents=documents)[0]
    starts = [0, 5, 12]
    for example, start in zip(examples, starts, strict=True):
        alone = model(example.unsqueeze(0))[0]
        torch.testing.assert_close(out[start : start + len(example)], alone, rtol=1e-5, atol=1e-5)
    # Perturb the middle example: the others' logits do not move at all.
    changed = packed.clone()
    changed[0, 5:12] = (changed[0, 5:12] + 1) % 50
    out2 = model(changed, documents=documents)[0]
    assert torch.equal(out2[:5], out[:5]) and torch.equal(out2[12:], out[12:])
    assert not torch.allclose(out2[5:12], out[5:12])
    # Without documents the third example does see the others (the test can fail).
    plain = model(changed)[0]
    assert not torch.allclose(model(packed)[0][12:], plain[12:])
