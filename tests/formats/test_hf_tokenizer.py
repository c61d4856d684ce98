"""The Hugging Face export tokenizes exactly as our Tokenizer, on any text (property-based)."""

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from llamaforge.formats import to_hf
from llamaforge.tokenizer import Tokenizer, train_tokenizer
from tests.formats.conftest import TINY, random_model
from tests.tokenizer.conftest import make_corpus

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_tok")
    ours = train_tokenizer(
        folder / "tok.model", texts=make_corpus(), vocab_size=600, progress=False, num_threads=1
    )
    model = random_model(dataclasses.replace(TINY, vocab_size=ours.vocab_size))
    out = to_hf(model, folder / "hf", tokenizer_path=folder / "tok.model")
    fast = transformers.AutoTokenizer.from_pretrained(out, use_fast=True)
    slow = transformers.AutoTokenizer.from_pretrained(out, use_fast=False)
    return ours, fast, slow, out


# Text a corpus and a hostile user both produce: words from the training corpus,
# runs of spaces, tabs and newlines, digits, and any Unicode (emoji, CJK, control
# characters, U+2581 itself) that only byte fallback can spell.
_PIECES = st.sampled_from(
    ["the", "model", " ", "  ", "   ", "\n", "\n\n", "\t", "0", "42", "1234567", "def", "(x):"]
    + ["\u2581", "\u2581\u2581", "<s>", "</s>", "<unk>", "<0x41>", "\r\n", "\x00", "\x7f"]
    + ["\U0001f999", "\u4e2d\u6587", "\u00e9", "e\u0301", "\u200b", "\ufeff", "\u00a0"]
)
_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
    st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=12).map("".join),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT)
@example(" yes")  # the issue's example: transformers' Llama files gave [1, 612, 388]
@example("")
@example(" ")
@example("  leading and trailing  ")
@example("a\u2581b")
@example("\u2581start")
@example("<s> not BOS </s>")
def test_fast_and_slow_tokenizers_match_ours(exported, text):
    ours, fast, slow, _ = exported
    expected = ours.encode(text)
    for hf in (fast, slow):
        assert hf(text)["input_ids"] == expected
        assert hf.encode(text, add_special_tokens=False) == expected[1:]
        assert hf.decode(expected, skip_special_tokens=True) == ours.decode(expected) == text


def test_export_writes_fast_tokenizer_files(exported):
    ours, fast, _, out = exported
    assert (out / "tokenizer.json").is_file()
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert fast.is_fast and len(fast) == ours.vocab_size
    assert (fast.bos_token_id, fast.eos_token_id) == (ours.bos_id, ours.eos_id)
    assert fast.convert_ids_to_tokens(ours.encode(" yes", bos=False))[0] == "  "


def test_batch_and_the_issue_example(exported):
    ours, fast, _, _ = exported
    texts = [" yes", "yes", "  two spaces", "tab\tand\nnewline"]
    assert fast(texts)["input_ids"] == ours.encode_batch(texts, num_threads=1)
    assert ours.encode(" yes")[1] == ours.piece_to_id("\u2581\u2581")


def test_unsupported_normalization_skips_tokenizer_json(tmp_path):
    ours = train_tokenizer(
        tmp_path / "nfkc.model",
        texts=make_corpus(60),
        vocab_size=400,
        progress=False,
        num_threads=1,
        extra_options={"normalization_rule_name": "nmt_nfkc"},
    )
    model = random_model(dataclasses.replace(TINY, vocab_size=ours.vocab_size))
    with pytest.warns(UserWarning, match="no tokenizer.json written.*nmt_nfkc"):
        out = to_hf(model, tmp_path / "hf", tokenizer_path=ours.model_path)
    assert not (out / "tokenizer.json").exists()
    assert json.loads((out / "tokenizer_config.json").read_text())["legacy"] is True
    assert isinstance(Tokenizer(out / "tokenizer.model").encode("x"), list)
