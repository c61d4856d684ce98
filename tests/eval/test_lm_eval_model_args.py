"""``--model_args`` of the lm-eval backend: a bad value names its argument, before any loading."""

import pytest

from llamaforge.errors import ConfigError
from llamaforge.eval.lm_eval_backend import LlamaforgeLM
from tests.eval.toy import TOK, tiny_transformer


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"max_length": "abc"}, "max_length='abc' is not a whole number"),
        ({"max_gen_toks": "x"}, "max_gen_toks='x' is not a whole number"),
        ({"max_gen_toks": "1.5"}, "max_gen_toks='1.5' is not a whole number"),
        ({"max_gen_toks": True}, "max_gen_toks=True is not a whole number"),
        ({"max_length": 0}, "max_length must be >= 1, got 0"),
        ({"batch_size": "many"}, "batch_size='many' is not a whole number"),
        ({"prefix_sharing": "maybe"}, "prefix_sharing='maybe' must be true or false"),
        ({"progress": "sometimes"}, "progress='sometimes' must be true or false"),
    ],
)
def test_a_bad_model_argument_is_named_before_the_checkpoint_is_read(tmp_path, args, message):
    missing = tmp_path / "no-such-model"  # loading it would fail with another error
    with pytest.raises(ConfigError, match=f"model argument {message}"):
        LlamaforgeLM(pretrained=str(missing), **args)


def test_model_arguments_given_as_text_are_read():
    lm = LlamaforgeLM(
        model=tiny_transformer(TOK.vocab_size, max_seq_len=32), tokenizer=TOK, device="cpu",
        max_length="8", max_gen_toks="12", batch_size="3", prefix_sharing="False",
        progress="no",
    )  # fmt: skip
    assert (lm.max_length, lm.max_gen_toks, lm.batch_size) == (8, 12, 3)
    assert lm.prefix_sharing is False and lm.progress is False
    lm = LlamaforgeLM(model=tiny_transformer(TOK.vocab_size), tokenizer=TOK, max_length=99.0)
    assert lm.max_length == 32  # never beyond the model's window
