"""C4 (paper Table 1, 15 %): C4-style JSON lines cleaned with C4's heuristics.

The paper used the public C4 dataset; the same rules also clean raw
CommonCrawl-derived pages, so inputs are any JSON lines with records
``{"text", "url", "timestamp"}`` (``.json``/``.jsonl``, optionally ``.gz`` or
``.zst``, as in allenai/c4's ``c4-train.*.json.gz``).

:func:`c4_clean` applies Raffel et al. (2020, §2.2) in the order of the TFDS
``c4_utils.clean_page`` code, line by line:

1. lines with a word longer than ``max_word_length`` are removed
   (``c4.max_word_length``); citation markers ``[1]``/``[edit]`` are deleted;
2. lines not ending in terminal punctuation are removed (``c4.terminal_punct``);
3. lines with fewer than ``min_words_per_line`` words are removed
   (``c4.min_words_per_line``);
4. a surviving line with "lorem ipsum" drops the page (``c4.lorem_ipsum``);
5. lines mentioning "javascript" are removed (``c4.javascript``);
6. a surviving line with ``{`` drops the page (``c4.curly_bracket``);
7. cookie/policy notice lines are removed (``c4.policy``);

then per page: fewer than ``min_sentences`` sentences left
(``c4.min_sentences``), fewer than ``min_words`` words (``c4.min_words``, off
by default: C4 had no page word minimum), a bad word (``c4.bad_words``). As in
TFDS, rules 4 and 6 look only at lines that survived rules 1-3, so a
navigation snippet such as ``function(){`` does not condemn a page whose
prose is clean. Line removals do not drop a document, so they are counted per
kept page in ``meta["c4_lines_removed"]``.

Three-sentence dedup (``c4.dedup`` when too few sentences remain): C4 removed
repeated three-sentence spans across the whole dataset. Here the scope is
``dedup_scope``: ``"file"`` (default; in the worker, within one input file),
``"source"`` (additionally across all files in :meth:`C4Source.global_filter`,
holding ~70 bytes per distinct span in one process) or ``"none"``. C4's
langdetect English filter is not repeated here: the CommonCrawl source owns
language identification, and the public C4 is already English.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from llamaforge.data.sources import c4_rules
from llamaforge.data.sources.base import Document, FilterReport
from llamaforge.data.sources.textio import iter_json_records
from llamaforge.errors import ConfigError

INPUT_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst")
DEDUP_SCOPES = ("none", "file", "source")


@dataclass
class C4Config:
    """``[sources.c4]``: the C4 thresholds.

    ``min_words_per_line = 5``, ``min_sentences = 3`` and ``max_word_length =
    1000`` are TFDS ``c4_utils``' ``_MIN_WORDS_PER_LINE``, ``_MIN_NUM_SENTENCES``
    and ``_MAX_WORD_LENGTH``, the code that made the public C4 (the paper's
    text words them the other way round; datatrove's C4QualityFilter uses 3
    words and 5 sentences). ``min_words`` (a page minimum) is ours, off by default.
    """

    min_words_per_line: int = 5
    min_sentences: int = 3
    min_words: int = 0
    max_word_length: int = 1000
    remove_citations: bool = True
    use_badwords: bool = True
    badwords_path: str = ""  # "" = tiny built-in placeholder list; use LDNOOBW for real runs
    dedup_scope: str = "file"
    max_record_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        for name in ("min_words_per_line", "min_sentences", "min_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"[sources.c4].{name} must be an integer >= 0, got {value!r}")
        for name in ("max_word_length", "max_record_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"[sources.c4].{name} must be an integer >= 1, got {value!r}")
        if self.dedup_scope not in DEDUP_SCOPES:
            raise ConfigError(
                f"[sources.c4].dedup_scope must be one of {', '.join(DEDUP_SCOPES)}, "
                f"got {self.dedup_scope!r}"
            )
        if not isinstance(self.badwords_path, str):
            raise ConfigError("[sources.c4].badwords_path must be a path string ('' = built-in)")
        if self.use_badwords and self.badwords_path and not Path(self.badwords_path).is_file():
            raise ConfigError(
                f"[sources.c4].badwords_path: {self.badwords_path} does not exist; "
                "point it at a word list (e.g. LDNOOBW 'en') or set use_badwords = false"
            )


@dataclass
class CleanedPage:
    """A page after the line rules: its lines, their sentences, and what was removed."""

    lines: list[str]
    sentences: list[list[str]]
    lines_removed: Counter = field(default_factory=Counter)

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()

    @property
    def sentence_count(self) -> int:
        return sum(len(s) for s in self.sentences)


def clean_lines(text: str, config: C4Config) -> tuple[CleanedPage | None, str]:
    """Rules 1-7 of the module docstring; ``(None, reason)`` if a page-level rule fired."""
    page = CleanedPage([], [])
    max_word, min_words = config.max_word_length, config.min_words_per_line
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        # A line no longer than max_word cannot hold a longer word: skip splitting it.
        if len(line) > max_word and max(map(len, line.split())) > max_word:
            page.lines_removed["max_word_length"] += 1
            continue
        if config.remove_citations and "[" in line:
            line = c4_rules.CITATION.sub("", line)  # not stripped again, as in TFDS
        if not c4_rules.ends_with_terminal_punctuation(line):
            page.lines_removed["terminal_punct"] += 1
            continue
        # At most min_words splits: fewer parts than min_words means fewer words.
        if len(line.split(None, min_words)) < min_words:
            page.lines_removed["min_words_per_line"] += 1
            continue
        lower = line.lower()
        if "lorem ipsum" in lower:
            return None, "c4.lorem_ipsum"
        if "javascript" in lower:
            page.lines_removed["javascript"] += 1
            continue
        if "{" in line:
            return None, "c4.curly_bracket"
        if c4_rules.has_policy_text(lower):
            page.lines_removed["policy"] += 1
            continue
        page.lines.append(line)
        page.sentences.append(c4_rules.split_sentences(line))
    return page, ""


def check_page(page: CleanedPage, config: C4Config) -> str:
    """The page-level rules on a cleaned page: "" if kept, else the drop reason."""
    if page.sentence_count < config.min_sentences:
        return "c4.min_sentences"
    text = page.text
    if config.min_words and len(text.split()) < config.min_words:
        return "c4.min_words"
    if config.use_badwords:
        pattern = c4_rules.badword_pattern(config.badwords_path)
        if pattern is not None and pattern.search(text):
            return "c4.bad_words"
    return ""


def c4_clean(text: str, config: C4Config | None = None) -> tuple[str | None, str]:
    """C4's cleaning of one page: ``(cleaned_text, "")`` or ``(None, "c4.<rule>")``.

    Dedup is not part of it, since it needs state across pages (see
    :class:`~llamaforge.data.sources.c4_rules.SentenceSpanDedup`).
    """
    config = config or C4Config()
    page, reason = clean_lines(text, config)
    if page is None:
        return None, reason
    reason = check_page(page, config)
    return (None, reason) if reason else (page.text, "")


def dedup_page(page: CleanedPage, dedup: c4_rules.SentenceSpanDedup, config: C4Config) -> str:
    """Remove already-seen spans from ``page`` in place; "" if it is still kept, else the reason.

    A kept page's spans are remembered, so its first occurrence wins.
    """
    kept, removed, keys = dedup.remove_seen(page.sentences)
    if removed:
        lines, sentences = [], []
        for original, before, after in zip(page.lines, page.sentences, kept, strict=True):
            if after:
                lines.append(original if len(after) == len(before) else " ".join(after))
                sentences.append(after)
        page.lines, page.sentences = lines, sentences
        page.lines_removed["dedup_sentences"] += removed
        if check_page(page, config):
            return "c4.dedup"
    dedup.remember(keys)
    return ""


def _page_from_text(text: str) -> CleanedPage:
    lines = [line for line in text.split("\n") if line.strip()]
    return CleanedPage(lines, [c4_rules.split_sentences(line) for line in lines])


class C4Source:
    """C4-style JSON lines -> pages cleaned by :func:`c4_clean`, deduplicated by span."""

    name: ClassVar[str] = "c4"
    VERSION: ClassVar[int] = 3  # bump when the cleaning code changes its output (build recipes)

    def __init__(self, config: C4Config) -> None:
        self.config = config

    def list_inputs(self, root: Path) -> list[Path]:
        root = Path(root)
        if root.is_file():
            return [root]
        return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(INPUT_SUFFIXES))

    def _filters(self) -> list[str]:
        names = ["c4.lines", "c4.lorem_ipsum", "c4.curly_bracket", "c4.min_sentences"]
        if self.config.min_words:
            names.append("c4.min_words")
        if self.config.use_badwords:
            names.append("c4.bad_words")
        if self.config.dedup_scope != "none":
            names.append("c4.dedup")
        return names

    def _records(self, path: Path, report: FilterReport) -> Iterator[tuple[int, dict]]:
        """Parsed JSON records with a string ``text``; everything else is counted as bad."""
        for lineno, record in iter_json_records(path, report, self.config.max_record_bytes):
            if not isinstance(record.get("text"), str):
                report.bad("schema", f"{path}:{lineno}")
                continue
            yield lineno, record

    def process(self, path: Path, report: FilterReport) -> Iterator[Document]:
        path = Path(path)
        dedup = c4_rules.SentenceSpanDedup() if self.config.dedup_scope != "none" else None
        filters = self._filters()
        for lineno, record in self._records(path, report):
            text = record["text"]
            page, reason = clean_lines(text, self.config)
            if page is not None:
                reason = check_page(page, self.config)
            if page is not None and not reason and dedup is not None:
                reason = dedup_page(page, dedup, self.config)
            if page is None or reason:
                report.drop(reason, text)
                continue
            cleaned = page.text
            report.keep(cleaned)
            url = record.get("url")
            meta = {
                "input": path.name,
                "line": lineno,
                "filters": filters,
                "c4_lines_removed": dict(sorted(page.lines_removed.items())),
            }
            if url:
                meta["url"] = url
            if record.get("timestamp"):
                meta["timestamp"] = record["timestamp"]
            yield Document(cleaned, self.name, str(url or f"{path.name}:{lineno}"), meta)

    def global_filter(self, docs: Iterable[Document], report: FilterReport) -> Iterator[Document]:
        """Source-wide span dedup when ``dedup_scope = "source"``; otherwise pass-through."""
        if self.config.dedup_scope != "source":
            yield from docs
            return
        dedup = c4_rules.SentenceSpanDedup()
        for doc in docs:
            page = _page_from_text(doc.text)
            if dedup_page(page, dedup, self.config):
                report.drop("c4.dedup", doc.text)
                continue
            if page.text != doc.text:
                doc.text = page.text
                removed = doc.meta.setdefault("c4_lines_removed", {})
                removed["dedup_sentences"] = page.lines_removed["dedup_sentences"] + removed.get(
                    "dedup_sentences", 0
                )
            yield doc
