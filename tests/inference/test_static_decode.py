"""The static-shape compiled decoding step gives the eager decoder's tokens."""

import torch

from llamaforge.inference import SamplingConfig, generate_ids, stream
from llamaforge.inference.static_decode import CACHE_BUCKET, bucketed_cache_len
from llamaforge.model import ModelConfig, build_model


def small_model(max_seq_len: int = 40) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=32, n_layers=2, n_heads=2, vocab_size=96, max_seq_len=max_seq_len, init_std=0.1
    )
    return build_model(cfg).eval()


def test_compiled_decode_tokens_equal_eager_with_padding_and_the_context_limit():
    model = small_model()
    # Ragged prompts (left padding); the longest (31 tokens) makes the context
    # length (40) end the whole batch's generation before max_new_tokens.
    prompts = [[1, 5, 9, 3], [1, 7], [1, *range(2, 32)]]
    cfg = SamplingConfig(max_new_tokens=14)
    eager = generate_ids(model, prompts, cfg, eos_id=None)
    compiled = generate_ids(model, prompts, cfg, eos_id=None, compile="inductor")
    assert compiled == eager
    assert [len(x) for x in eager] == [40 - 31 + 1] * 3
    assert len({tuple(x) for x in eager}) == 3  # really different continuations
    # Sampling with a seed: the same draws over the same logits.
    seeded = SamplingConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=3)
    assert generate_ids(model, prompts[:2], seeded, None, compile="inductor") == generate_ids(
        model, prompts[:2], seeded, None
    )


def test_compiled_decode_stops_at_eos_and_streams_like_eager(tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=32, n_layers=2, n_heads=2, vocab_size=tokenizer.vocab_size, max_seq_len=64
    )
    model = build_model(cfg).eval()
    eos = generate_ids(model, [[tokenizer.bos_id, 7]], SamplingConfig(max_new_tokens=5), None)[0][2]
    settings = SamplingConfig(max_new_tokens=8)
    compiled = generate_ids(model, [[tokenizer.bos_id, 7]], settings, eos, compile="aot_eager")
    assert compiled == generate_ids(model, [[tokenizer.bos_id, 7]], settings, eos)
    assert len(compiled[0]) == 2  # ended at the third token, EOS not included
    text = "".join(stream(model, tokenizer, "the cat", settings, compile="aot_eager"))
    assert text == "".join(stream(model, tokenizer, "the cat", settings))


def test_cache_lengths_are_bucketed_and_capped():
    assert bucketed_cache_len(1, 2048) == CACHE_BUCKET
    assert bucketed_cache_len(CACHE_BUCKET + 1, 2048) == 2 * CACHE_BUCKET
    assert bucketed_cache_len(300, 290) == 290
