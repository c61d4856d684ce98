"""Batched evaluation generation: samples, seeds, stops, truncation, shots (and ScriptedModel)."""

import math
import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.generation import (
    draw_shots,
    fit_shots,
    generate_completions,
    prompt_token_budget,
)
from llamaforge.inference import SamplingConfig, generate
from tests.eval.toy import TOK, tid


class ScriptedModel(nn.Module):
    """A model that writes a scripted answer to each prompt, one character token at a time.

    ``answer_for(prompt_text)`` returns the answer, or a list of equally likely
    answers: at each step the logits are log(number of answers still matching
    that continue with this character), so greedy decoding follows the most
    common next character and sampling at temperature 1 draws answers in
    proportion to their counts. It implements the KV-cache interface of
    ``llamaforge.inference`` (``new_cache`` and the decoding keywords) and
    records every prompt it was given (after truncation; BOS and padding are
    invisible in the decoded text).
    """

    def __init__(self, answer_for, max_seq_len=512):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # the decoder reads the device from here
        self.config = SimpleNamespace(max_seq_len=max_seq_len, vocab_size=TOK.vocab_size)
        self.answer_for = answer_for
        self.prompts_seen = []

    def new_cache(self, batch, max_len=None, dtype=None):
        return SimpleNamespace(filled=0, prompts=[], written=[""] * batch)

    def forward(self, tokens, positions=None, mask=None, cache=None, last_only=False):
        if cache.filled == 0:
            cache.prompts = [TOK.decode(row.tolist()) for row in tokens]
            self.prompts_seen += cache.prompts
        else:
            for i, token in enumerate(tokens[:, -1].tolist()):
                cache.written[i] += TOK.decode([token])
        cache.filled += tokens.shape[1]
        logits = torch.full((tokens.shape[0], 1, TOK.vocab_size), -1e4)
        for i, prompt in enumerate(cache.prompts):
            options = self.answer_for(prompt)
            options = [options] if isinstance(options, str) else options
            done = cache.written[i]
            following = Counter(
                option[len(done)] if len(option) > len(done) else None
                for option in options
                if option.startswith(done)
            ) or Counter([None])
            for char, count in following.items():
                logits[i, 0, TOK.eos_id if char is None else tid(char)] = math.log(count)
        return logits


def greedy(max_new_tokens=32, **kwargs):
    return SamplingConfig(max_new_tokens=max_new_tokens, **kwargs)


def test_greedy_completions_follow_the_script_in_input_order_and_stop():
    model = ScriptedModel(lambda p: f" {p[::-1]}\nmore text")
    prompts = ["abc", "a much longer prompt", "xy", "hello"]
    out = generate_completions(
        model, TOK, prompts, greedy(stop=("\n",)), batch_size=3, progress=False
    )
    assert out == [[" cba"], [" tpmorp regnol hcum a"], [" yx"], [" olleh"]]
    # without the stop string the whole script comes out, ending at EOS
    out = generate_completions(model, TOK, ["ab"], greedy(), progress=False)
    assert out == [[" ba\nmore text"]]
    # max_new_tokens cuts it
    assert generate_completions(model, TOK, ["ab"], greedy(3), progress=False) == [[" ba"]]


def test_greedy_with_n_samples_decodes_once_and_repeats():
    model = ScriptedModel(lambda p: "42")
    out = generate_completions(model, TOK, ["q1", "q2"], greedy(), n=3, progress=False)
    assert out == [["42"] * 3, ["42"] * 3]
    assert sorted(model.prompts_seen) == ["q1", "q2"]  # one decoding row per prompt


def test_sampling_is_seeded_per_batch_and_draws_from_the_script():
    model = ScriptedModel(lambda p: ["yes", "no"])
    cfg = SamplingConfig(max_new_tokens=8, temperature=1.0, seed=7)
    first = generate_completions(model, TOK, ["q"], cfg, n=12, batch_size=1, progress=False)
    again = generate_completions(model, TOK, ["q"], cfg, n=12, batch_size=1, progress=False)
    assert first == again  # reproducible
    assert set(first[0]) == {"yes", "no"}  # one seed per batch: batches do not repeat each other
    assert len(first[0]) == 12
    other = SamplingConfig(max_new_tokens=8, temperature=1.0, seed=8)
    assert generate_completions(model, TOK, ["q"], other, n=12, batch_size=1, progress=False) != (
        first
    )


def test_long_prompts_are_cut_from_the_left():
    model = ScriptedModel(lambda p: "!", max_seq_len=16)
    prompt = "0123456789abcdefghijklmnopqrstuvwxyz"
    generate_completions(model, TOK, [prompt], greedy(4), progress=False)
    assert model.prompts_seen[-1] == prompt[-12:]  # 16 - 4 tokens kept, BOS dropped
    generate_completions(model, TOK, [prompt], greedy(12), progress=False)
    assert model.prompts_seen[-1] == prompt[-8:]  # at least half the context stays the prompt
    generate_completions(model, TOK, [prompt], greedy(4), max_seq_len=10, progress=False)
    assert model.prompts_seen[-1] == prompt[-6:]  # an evaluation window below the model's
    assert prompt_token_budget(2048, 32) == 2016


def test_completions_end_at_an_evaluation_window_below_the_models():
    model = ScriptedModel(lambda p: "x" * 100, max_seq_len=512)
    prompts = ["p" * 10, "q" * 4]  # 11 and 5 tokens with BOS
    (long,), (short,) = generate_completions(
        model, TOK, prompts, greedy(50), max_seq_len=30, batch_size=2, progress=False
    )
    # the batch is as wide as its longest prompt: 11 + 20 new tokens, the last not fed back
    assert long == short == "x" * 20
    ((alone,),) = generate_completions(
        model, TOK, prompts[1:], greedy(50), max_seq_len=30, progress=False
    )
    assert alone == "x" * 26


def test_bad_arguments_are_config_errors_and_mode_is_restored():
    model = ScriptedModel(lambda p: "a")
    with pytest.raises(ConfigError, match="n >= 1"):
        generate_completions(model, TOK, ["q"], greedy(), n=0)
    with pytest.raises(ConfigError, match="batch_size"):
        generate_completions(model, TOK, ["q"], greedy(), batch_size=0)
    assert generate_completions(model, TOK, [], greedy()) == []
    model.train()
    generate_completions(model, TOK, ["q"], greedy(), progress=False)
    assert model.training


def test_fit_shots_keeps_as_many_shots_as_fit():
    def build(k):
        return "Q" + "x" * 10 * k  # 1 + 10k characters, BOS makes 2 + 10k tokens

    assert fit_shots(TOK, build, 64, 1000) == (build(64), 64)
    assert fit_shots(TOK, build, 64, 52) == (build(5), 5)
    assert fit_shots(TOK, build, 64, 51) == (build(4), 4)
    assert fit_shots(TOK, build, 3, 1) == (build(0), 0)  # nothing fits: 0 shots, truncated later


def test_draw_shots_is_seeded_distinct_and_never_the_document_itself():
    pool = [{"q": i} for i in range(10)]
    drawn = draw_shots(pool, 9, random.Random(0), exclude={"q": 3})
    assert len(drawn) == 9 and {"q": 3} not in drawn
    assert len({d["q"] for d in drawn}) == 9
    assert draw_shots(pool, 4, random.Random(1), {}) == draw_shots(pool, 4, random.Random(1), {})
    assert draw_shots(pool, 0, random.Random(0), {}) == []
    with pytest.raises(DataError, match="pool has 10"):
        draw_shots(pool, 10, random.Random(0), exclude={"q": 3})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from llamaforge.model import ModelConfig, Transformer
    from llamaforge.tokenizer import train_tokenizer

    lines = [f"question {i}: the answer is {i * 3} apples." for i in range(200)]
    tokenizer = train_tokenizer(
        tmp_path_factory.mktemp("spm") / "tok.model",
        texts=lines,
        vocab_size=300,
        progress=False,
        num_threads=1,
    )
    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=32, n_layers=2, n_heads=4, vocab_size=tokenizer.vocab_size, max_seq_len=48,
        multiple_of=16,
    )  # fmt: skip
    return Transformer(cfg), tokenizer


def test_real_model_greedy_matches_inference_and_sampling_is_reproducible(tiny):
    model, tokenizer = tiny
    prompts = ["question 3: the answer", "question", "the answer is 12 apples. question 7:"]
    cfg = SamplingConfig(max_new_tokens=10, stop=(".",))
    got = generate_completions(model, tokenizer, prompts, cfg, batch_size=2, progress=False)
    assert [g[0] for g in got] == generate(model, tokenizer, prompts, cfg)
    # a prompt longer than the 48-token context is cut, not an error
    long_prompt = " ".join(f"question {i}: the answer is {i * 3} apples." for i in range(20))
    assert len(tokenizer.encode(long_prompt)) > 48
    sampled = SamplingConfig(max_new_tokens=6, temperature=1.0, seed=3)
    a = generate_completions(
        model, tokenizer, [*prompts, long_prompt], sampled, n=3, progress=False
    )
    b = generate_completions(
        model, tokenizer, [*prompts, long_prompt], sampled, n=3, progress=False
    )
    assert a == b and all(len(per_prompt) == 3 for per_prompt in a)
    assert len({s for per_prompt in a for s in per_prompt}) > 1  # really sampled
