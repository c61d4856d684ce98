"""CCNet's CommonCrawl pipeline (Wenzek et al. 2020) as LLaMA §2.1 used it, in pieces.

``warc`` reads WET/WARC archives, ``normalize`` and ``line_dedup`` remove
boilerplate lines per shard, ``langid`` keeps English, ``arpa`` (training)
and ``perplexity`` (KenLM scoring and head/middle/tail buckets) implement the
quality filter, and ``wikiref`` is LLaMA's Wikipedia-reference classifier.
:mod:`llamaforge.data.sources.commoncrawl` chains them into a source.
"""

from llamaforge.data.ccnet.arpa import train_arpa
from llamaforge.data.ccnet.langid import LanguageIdentifier, train_language_id
from llamaforge.data.ccnet.line_dedup import LineHashCounter, remove_duplicate_lines
from llamaforge.data.ccnet.normalize import normalize_line
from llamaforge.data.ccnet.perplexity import PerplexityScorer, bucket, perplexity_cutoffs
from llamaforge.data.ccnet.wikiref import WikirefClassifier, train_wikiref_classifier

__all__ = [
    "LanguageIdentifier",
    "LineHashCounter",
    "PerplexityScorer",
    "WikirefClassifier",
    "bucket",
    "normalize_line",
    "perplexity_cutoffs",
    "remove_duplicate_lines",
    "train_arpa",
    "train_language_id",
    "train_wikiref_classifier",
]
