import math
import random

import kenlm
import pytest

from llamaforge.data.ccnet.arpa import train_arpa
from llamaforge.data.ccnet.perplexity import (
    PerplexityScorer,
    bucket,
    ccnet_cutoffs,
    cutoff_languages,
    perplexity_cutoffs,
    prepare_line,
)
from llamaforge.errors import ConfigError

CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat ate the rat on a mat"]


def test_kenlm_score_equals_hand_computed_kneser_ney(tmp_path):
    # Sentences "<s> a b </s>", "<s> a c </s>", "<s> b a </s>", discount 0.5.
    model = kenlm.Model(str(train_arpa(["a b\na c", "b a"], 2, tmp_path / "lm.arpa", 0.5)))
    # Unigram continuation counts: a 2, b 2, c 1, </s> 3 (total 8, 4 types); vocab of 5 with
    # <unk>, so the uniform share is gamma0 / 5 with gamma0 = 0.5 * 4 / 8.
    uniform = 0.5 * 4 / 8 / 5
    p_a, p_c, p_end = 1.5 / 8 + uniform, 0.5 / 8 + uniform, 2.5 / 8 + uniform
    p_b = p_a
    # Bigram contexts: <s> -> {a: 2, b: 1}; a -> {b, c, </s>}; b -> {</s>, a}; c -> {</s>}.
    p_a_after_bos = 1.5 / 3 + (0.5 * 2 / 3) * p_a
    p_b_after_a = 0.5 / 3 + (0.5 * 3 / 3) * p_b
    p_end_after_b = 0.5 / 2 + (0.5 * 2 / 2) * p_end
    expected = math.log10(p_a_after_bos * p_b_after_a * p_end_after_b)
    assert model.score("a b") == pytest.approx(expected, abs=1e-5)
    # Unseen bigrams back off: p(c|<s>) = gamma(<s>) p(c), p(a|c) = gamma(c) p(a).
    p_end_after_a = 0.5 / 3 + 0.5 * p_end
    unseen = math.log10((1 / 3) * p_c * (0.5 * p_a) * p_end_after_a)
    assert model.score("c a") == pytest.approx(unseen, abs=1e-5)
    assert model.score("zzz") == pytest.approx(math.log10(uniform / 3) + math.log10(p_end), 1e-5)


def test_trigram_distributions_sum_to_one(tmp_path):
    model = kenlm.Model(str(train_arpa(CORPUS, 3, tmp_path / "lm.arpa")))
    vocab = sorted({w for line in CORPUS for w in line.split()}) + ["</s>", "<unk>"]
    for context in (["the", "cat"], ["sat", "on"], ["on"], ["mat", "the"]):
        state = kenlm.State()
        model.NullContextWrite(state)
        for word in context:
            nxt = kenlm.State()
            model.BaseScore(state, word, nxt)
            state = nxt
        total = sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-4), context


def test_train_arpa_rejects_empty_text(tmp_path):
    with pytest.raises(ConfigError):
        train_arpa(["", "  \n "], 3, tmp_path / "lm.arpa")
    assert not (tmp_path / "lm.arpa").exists()


def test_document_perplexity_is_ccnet_pipeline_formula(tmp_path):
    # CCNet's mine.py normalises the whole document (newlines are control characters and
    # go), so it scores one sequence: 10 ** (-log10 p / (words + 1)), rounded to 0.1.
    lm_path = train_arpa([prepare_line(line) for line in CORPUS], 3, tmp_path / "lm.arpa")
    scorer = PerplexityScorer(lm_path)
    doc = "The Cat sat on the MAT.\n\nA dog ate 12 rats"
    joined = "the cat sat on the mat.a dog ate 00 rats"
    assert prepare_line(doc) == joined
    log10 = scorer.model.score(joined, bos=True, eos=True)
    assert scorer.perplexity(doc) == round(10 ** (-log10 / (10 + 1)), 1)  # 10 words + </s>
    assert scorer.perplexity("\n \n") == math.inf


def test_line_by_line_perplexity_is_docLM_formula(tmp_path):
    lm_path = train_arpa([prepare_line(line) for line in CORPUS], 3, tmp_path / "lm.arpa")
    scorer = PerplexityScorer(lm_path)
    doc = "The Cat sat on the MAT.\n\nA dog ate 12 rats"
    lines = ["the cat sat on the mat.", "", "a dog ate 00 rats"]
    log10 = sum(scorer.model.score(line) for line in lines)
    tokens = (6 + 1) + (0 + 1) + (5 + 1)  # DocLM scores the empty line too
    assert scorer.perplexity(doc, lines=True) == round(10 ** (-log10 / tokens), 1)


def test_ccnet_cutoff_table_values():
    # cc_net/data/cutoff.csv rows 30 and 60, read by hand.
    assert ccnet_cutoffs("en") == (340.0, 520.0)
    assert ccnet_cutoffs("de") == (370.0, 590.0)
    assert ccnet_cutoffs("en", (0, 1)) == (0.0, 160.0)
    assert len(cutoff_languages()) == 48 and "zh" in cutoff_languages()
    with pytest.raises(ConfigError, match="tlh"):
        ccnet_cutoffs("tlh")


def test_in_domain_text_has_lower_perplexity_than_shuffled(tmp_path):
    rng = random.Random(0)
    lm_path = train_arpa(CORPUS * 3, 3, tmp_path / "lm.arpa")
    scorer = PerplexityScorer(lm_path)
    words = " ".join(CORPUS).split()
    rng.shuffle(words)
    assert scorer.perplexity("the cat sat on the log") < scorer.perplexity(" ".join(words))


def test_sentencepiece_tokenisation_is_applied_before_kenlm(tmp_path):
    import sentencepiece as spm

    text = tmp_path / "text.txt"
    text.write_text("\n".join(CORPUS * 20) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=30, model_type="bpe"
    )
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    pieces = [prepare_line(line, sp) for line in CORPUS]
    assert all(len(p.split()) > len(line.split()) for p, line in zip(pieces, CORPUS, strict=True))
    lm_path = train_arpa(pieces, 3, tmp_path / "lm.arpa")
    scorer = PerplexityScorer(lm_path, tmp_path / "sp.model")
    expected_log10 = scorer.model.score(pieces[0])
    expected = 10 ** (-expected_log10 / (len(pieces[0].split()) + 1))
    assert scorer.perplexity(CORPUS[0]) == round(expected, 1)


def test_bucket_boundaries_and_percentile_cutoffs():
    assert [bucket(p, [10.0, 20.0]) for p in (9.9, 10.0, 19.9, 20.0)] == [
        "head",
        "middle",
        "middle",
        "tail",
    ]
    head, tail = perplexity_cutoffs(range(1, 101), 30, 60)
    assert (head, tail) == pytest.approx((30.7, 60.4))
    with pytest.raises(ConfigError):
        perplexity_cutoffs([math.inf])


def test_unloadable_lm_is_config_error(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("not an arpa file\n")
    with pytest.raises(ConfigError, match="bad.arpa"):
        PerplexityScorer(bad)


def test_kenlm_loading_banner_is_kept_off_our_output(tmp_path, capfd):
    lm_path = train_arpa(CORPUS * 3, 3, tmp_path / "lm.arpa")
    capfd.readouterr()
    kenlm.Model(str(lm_path))
    assert "Loading" in capfd.readouterr().err  # KenLM's own banner, on fd 2
    scorer = PerplexityScorer(lm_path)
    print("ours", file=__import__("sys").stderr)
    assert capfd.readouterr().err == "ours\n"
    assert scorer.perplexity("the cat sat on the mat") > 0
    with pytest.raises(ConfigError, match="cannot load KenLM model"):
        PerplexityScorer(tmp_path / "missing.arpa")
