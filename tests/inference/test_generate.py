import pytest
import torch
import torch.nn.functional as F

from llamaforge.errors import ConfigError, DataError
from llamaforge.inference import (
    SamplingConfig,
    TextDecoder,
    decode_steps,
    generate,
    generate_ids,
    stream,
)
from llamaforge.inference.generate import _unsafe_tail

TEXTS = ["the", "a dog sat on the mat and ran far away", "café naïve € 12"]


def reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    """Greedy rollout that re-runs the full forward pass, no cache, no padding."""
    ids, out = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(torch.tensor([ids]))[0, -1].argmax())
            out.append(token)
            ids.append(token)
    return out


def encode_all(tokenizer, texts=TEXTS) -> list[list[int]]:
    return [tokenizer.encode(t) for t in texts]


def test_cached_greedy_equals_full_forward_for_each_padded_sequence(model, tokenizer):
    prompts = encode_all(tokenizer)
    assert len({len(p) for p in prompts}) == 3  # really different lengths
    out = generate_ids(model, prompts, SamplingConfig(max_new_tokens=24), eos_id=None)
    for prompt, got in zip(prompts, out, strict=True):
        assert got == reference_greedy(model, prompt, 24)
    assert len({tuple(o) for o in out}) == 3


def test_cached_greedy_equals_full_forward_without_padding(model, tokenizer):
    torch.manual_seed(1)
    prompts = torch.randint(3, tokenizer.vocab_size, (2, 7)).tolist()
    out = generate_ids(model, prompts, SamplingConfig(max_new_tokens=16), eos_id=None)
    assert out == [reference_greedy(model, p, 16) for p in prompts]


def test_generation_stops_at_the_context_length(model, tokenizer, model_config):
    prompt = [tokenizer.bos_id] + [5] * (model_config.max_seq_len - 5)
    out = generate_ids(model, [prompt], SamplingConfig(max_new_tokens=50), eos_id=None)
    assert len(out[0]) == 5
    assert out[0] == reference_greedy(model, prompt, 5)


def test_each_sequence_stops_at_its_own_eos_and_the_loop_at_the_last(model, tokenizer):
    prompts = encode_all(tokenizer)
    cfg = SamplingConfig(max_new_tokens=20)
    free = generate_ids(model, prompts, cfg, eos_id=None)
    eos = free[0][4]
    expected = [ids[: ids.index(eos)] if eos in ids else ids for ids in free]
    assert expected[0] != free[0]
    assert generate_ids(model, prompts, cfg, eos_id=eos) == expected
    steps = list(decode_steps(model, prompts, cfg, eos_id=eos))
    needed = max(
        len(e) + 1 if len(e) < len(f) else len(f) for e, f in zip(expected, free, strict=True)
    )
    assert len(steps) == needed


def test_stop_strings_cut_the_text_before_the_stop(model, tokenizer):
    cfg = SamplingConfig(max_new_tokens=30)
    free = generate(model, tokenizer, TEXTS, cfg)
    stop = free[1][6:9]
    assert stop and "\ufffd" not in stop
    cut = generate(model, tokenizer, TEXTS, SamplingConfig(max_new_tokens=30, stop=(stop,)))
    assert cut == [t[: t.index(stop)] if stop in t else t for t in free]
    ids = generate_ids(
        model,
        encode_all(tokenizer),
        SamplingConfig(max_new_tokens=30, stop=stop),
        None,
        tokenizer=tokenizer,
    )
    assert len(ids[1]) < 30


def test_seeded_sampling_is_reproducible(model, tokenizer):
    prompts = encode_all(tokenizer)

    def run(seed):
        cfg = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=0.95, top_k=50, seed=seed)
        return generate_ids(model, prompts, cfg, eos_id=None)

    assert run(3) == run(3)
    assert run(3) != run(4)
    assert all(len(o) == 12 for o in run(3))


def test_stream_joins_to_generate(model, tokenizer):
    free = generate(model, tokenizer, TEXTS[1:2], SamplingConfig(max_new_tokens=30))[0]
    for cfg in (
        SamplingConfig(max_new_tokens=30),
        SamplingConfig(max_new_tokens=30, stop=(free[8:11],)),
        SamplingConfig(max_new_tokens=30, temperature=1.0, seed=5),
    ):
        pieces = list(stream(model, tokenizer, TEXTS[1], cfg))
        assert all(pieces)
        assert "".join(pieces) == generate(model, tokenizer, TEXTS[1:2], cfg)[0]
    assert len(pieces) > 1


def test_text_decoder_yields_multibyte_characters_only_once_complete(tokenizer):
    ids = tokenizer.encode("the cat € café")
    prompt, rest = ids[:3], ids[3:]
    byte_steps = [i for i, t in enumerate(rest) if tokenizer.sp.id_to_piece(t).startswith("<0x")]
    assert len(byte_steps) == 3  # the fixture's vocabulary spells € as three bytes
    decoder = TextDecoder(tokenizer, prompt)
    pieces = [decoder.push(t) for t in rest]
    decoder.flush()
    assert [pieces[i] for i in byte_steps[:2]] == ["", ""]
    assert "€" in pieces[byte_steps[2]]
    assert "".join(pieces) == decoder.text
    assert decoder.text == tokenizer.decode(ids)[len(tokenizer.decode(prompt)) :]
    assert decoder.text.startswith(" ")  # the completion keeps its leading space
    assert "\ufffd" not in decoder.text


def test_text_decoder_flush_emits_an_unfinished_character(tokenizer):
    ids = tokenizer.encode("€")
    decoder = TextDecoder(tokenizer, ids[:1])
    assert [decoder.push(t) for t in ids[1:-1]] == [""] * (len(ids) - 2)
    assert decoder.flush().endswith("\ufffd")


def test_unsafe_tail_is_the_longest_suffix_that_starts_a_stop():
    assert _unsafe_tail("abc", ["cd"]) == 1
    assert _unsafe_tail("abc", ["cd", "bcx"]) == 2
    assert _unsafe_tail("abc", ["zz"]) == 0
    assert _unsafe_tail("ab", ["ab"]) == 0  # a full match is the stop itself, not a tail


def test_decoding_runs_in_inference_mode_and_leaves_the_model_unchanged(model, tokenizer):
    seen = []
    handle = model.register_forward_hook(lambda *_: seen.append(torch.is_inference_mode_enabled()))
    generate_ids(model, encode_all(tokenizer), SamplingConfig(max_new_tokens=3), None)
    handle.remove()
    assert seen and all(seen)
    assert not model.norm._forward_pre_hooks
    assert model(torch.tensor([[1, 5, 6]])).shape == (1, 3, tokenizer.vocab_size)


def test_bad_prompts_raise_user_errors(model, tokenizer, model_config):
    cfg = SamplingConfig(max_new_tokens=2)
    with pytest.raises(ConfigError, match="prompt 1 is empty"):
        generate_ids(model, [[1], []], cfg, None)
    with pytest.raises(ConfigError, match="max_seq_len"):
        generate_ids(model, [[1] * (model_config.max_seq_len + 1)], cfg, None)
    with pytest.raises(DataError, match="prompt 0"):
        generate_ids(model, [[1, tokenizer.vocab_size]], cfg, None)
    with pytest.raises(ConfigError, match="tokenizer"):
        generate_ids(model, [[1]], SamplingConfig(stop="x"), None)
    assert generate_ids(model, [[1], [1, 4]], SamplingConfig(max_new_tokens=0), None) == [[], []]


def test_padded_prefill_masks_hide_padding_and_never_mask_a_whole_row(
    model, tokenizer, monkeypatch
):
    masks = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        masks.append(attn_mask)
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    prompts = [[1, 5], [1, 5, 6, 7]]
    generate_ids(model, prompts, SamplingConfig(max_new_tokens=2), None)
    prefill, step = masks[0], masks[-1]
    assert prefill.shape == (2, 1, 4, 4) and prefill.any(dim=-1).all()
    assert not prefill[0, 0, 2:, :2].any()  # real queries never see the two pad slots
    assert prefill[1, 0].equal(torch.ones(4, 4, dtype=torch.bool).tril())
    assert step.shape == (2, 1, 1, 5) and step[0, 0, 0].tolist() == [False, False, True, True, True]


def test_a_vocabulary_padded_past_the_tokenizer_never_yields_a_padding_id(model, tokenizer):
    """Rows beyond the tokenizer (vocabulary rounded up) are boosted here: still never sampled."""
    import dataclasses

    from llamaforge.model import build_model

    padded_cfg = dataclasses.replace(model.config, vocab_size=tokenizer.vocab_size + 20)
    torch.manual_seed(0)
    padded = build_model(padded_cfg).eval()

    def boost(module, inputs, logits):  # the padding rows would win every step
        logits[..., tokenizer.vocab_size :] = 1e4
        return logits

    padded.output.register_forward_hook(boost)
    for cfg in (
        SamplingConfig(max_new_tokens=8),
        SamplingConfig(temperature=1.0, max_new_tokens=8, seed=0),
    ):
        ids = generate_ids(padded, [tokenizer.encode("the cat")], cfg, None, tokenizer=tokenizer)
        assert ids[0] and max(ids[0]) < tokenizer.vocab_size
        text = generate(padded, tokenizer, ["the cat"], cfg)[0]  # decodes: no out-of-range id
        assert isinstance(text, str)
        assert "".join(stream(padded, tokenizer, "the cat", cfg)) == text
