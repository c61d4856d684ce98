"""The Wikipedia-reference classifier (LLaMA §2.1, CommonCrawl).

LLaMA trained "a linear model to classify pages used as references in
Wikipedia v.s. randomly sampled pages, and discarded pages not classified as
references". Here it is a fastText supervised model with labels
``__label__wiki`` (pages cited by Wikipedia) and ``__label__cc`` (random
CommonCrawl pages); a page's score is its probability of ``wiki``.

Decision: pages scoring below ``wikiref_threshold`` (default 0.25, the cut
of RedPajama's released reproduction of this filter) are discarded, rather
than the 0.5 of "classified as a reference", which removes far more of CC.
Documents are flattened to one line and otherwise left as they are, both for
training and prediction, so a model trained elsewhere on raw page text works.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

from llamaforge.data.ccnet.fasttext_io import label_scores, load_fasttext, train_classifier
from llamaforge.errors import ConfigError

WIKI_LABEL, CC_LABEL = "wiki", "cc"


class WikirefClassifier:
    """Probability that a page is of the kind Wikipedia cites."""

    def __init__(self, model_path: str | Path, field: str = "wikiref_model") -> None:
        self.model = load_fasttext(model_path, field)
        labels = {label.removeprefix("__label__") for label in self.model.get_labels()}
        if WIKI_LABEL not in labels:
            raise ConfigError(
                f"{field}: {model_path} has labels {sorted(labels)}, needs __label__{WIKI_LABEL}"
            )

    def score(self, text: str) -> float:
        return label_scores(self.model, text).get(WIKI_LABEL, 0.0)


def train_wikiref_classifier(
    reference_texts: Iterable[str], random_texts: Iterable[str], out_path: str | Path, **params
) -> Path:
    """Train the classifier: pages cited by Wikipedia vs random pages (fastText, bigrams).

    ``params`` override fastText settings (e.g. ``epoch``, ``dim``); the
    defaults suit thousands to millions of pages.
    """
    examples = [(WIKI_LABEL, text) for text in reference_texts]
    examples += [(CC_LABEL, text) for text in random_texts]
    random.Random(0).shuffle(examples)  # fastText's SGD sees examples in file order
    if not examples:
        raise ConfigError(f"train_wikiref_classifier: no texts to train {out_path} on")
    settings = {"wordNgrams": 2, "bucket": 200000}
    settings.update(params)
    return train_classifier(examples, out_path, **settings)
