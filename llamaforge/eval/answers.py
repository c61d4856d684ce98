"""Answer post-processing for generative tasks: exact match (§3.3-3.4) and maj1@k (§3.5).

``normalize_answer`` is the SQuAD/TriviaQA official normalisation (lowercase,
drop punctuation, drop the articles a/an/the, collapse whitespace), so exact
match numbers are comparable with published ones.

Closed-book QA answers are cut as the paper's Appendix A says: "we stop at
the first line break, final dot or comma". The paper says nothing more, so
:func:`closed_book_answer` does what lm-eval 0.4's ``nq_open`` and
``triviaqa`` tasks do (``until: ["\\n", ".", ","]``, then their
``remove_whitespace`` filter): it keeps the text before the *first* newline,
``.`` or ``,``, whatever that character is doing there, and strips it. So a
decimal point, an abbreviation's dot or a thousands separator ends the
answer too ("3.5" -> "3", "St. Louis" -> "St", "1,000" -> "1"); a gold
answer holding one of these characters can only be matched through an
alias without it. :func:`first_line` is the newline-only cut (a generation
starting with a newline yields "").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from llamaforge.errors import ConfigError, DataError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# A number with thousands separators first (so "1,234" stays whole), else a plain one,
# else a decimal with no leading digit (".5", "-.25": "5" and "25" would be other values).
# ASCII digits only: ``\d`` would take "٧٢" (Arabic-Indic) as a number no comparison equals 72.
_NUMBER = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
_ANSWER_MARKERS = (re.compile(r"####"), re.compile(r"answer is", re.IGNORECASE))


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, strip punctuation and articles, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


# The closed-book stop strings, in lm-eval's order (the order does not change the cut).
CLOSED_BOOK_STOP: tuple[str, ...] = ("\n", ".", ",")


def first_line(text: str) -> str:
    """The generation up to (not including) its first newline."""
    return text.split("\n", 1)[0]


def closed_book_answer(text: str) -> str:
    """The answer in a closed-book generation: before the first newline, "." or ",", stripped.

    Equal to lm-eval's ``postprocess_generated_text(text, CLOSED_BOOK_STOP)``
    followed by ``str.strip`` (its ``remove_whitespace`` filter); see the
    module docstring for what this does to decimals and abbreviations.
    """
    cut = min((i for i in (text.find(s) for s in CLOSED_BOOK_STOP) if i >= 0), default=len(text))
    return text[:cut].strip()


def exact_match(prediction: str, gold_answers: Sequence[str]) -> bool:
    """Whether the normalised prediction equals any normalised gold alias (TriviaQA has many)."""
    if isinstance(gold_answers, str):
        gold_answers = [gold_answers]
    pred = normalize_answer(prediction)
    return any(pred == normalize_answer(g) for g in gold_answers)


def extract_number(text: str) -> str | None:
    """The final numeric answer of a GSM8k/MATH-style solution, canonicalised; None if none.

    Looks after the last ``####`` (GSM8k's reference format), else after the
    last "answer is", else takes the last number in the text. Thousands
    separators are removed and trailing decimal zeros dropped ("1,234.50" ->
    "1234.5", "12.0" -> "12"), so string equality compares values.
    """
    for marker in _ANSWER_MARKERS:
        hits = list(marker.finditer(text))
        if hits:
            found = _NUMBER.search(text, hits[-1].end())
            if found:
                return _canonical(found.group())
    numbers = _NUMBER.findall(text)
    return _canonical(numbers[-1]) if numbers else None


def exact_number(text: str) -> str | None:
    """``text`` canonicalised if it is one number and nothing else ("1,234.50" -> "1234.5").

    For reference answers (GSM8k's after ``####``), which must be a number:
    :func:`extract_number` would fall back to the last number anywhere. A
    leading ``$`` and a final ``.`` are allowed around it ("$5", "18."), the
    two characters lm-eval's ``gsm8k`` task also ignores in a reference
    (its ``regexes_to_ignore``); anything else ("72 clips", "1/2") is not one number.
    """
    text = text.strip()
    text = text[1:] if text.startswith("$") else text
    text = text[:-1] if text.endswith(".") else text
    found = _NUMBER.fullmatch(text.strip())
    return _canonical(found.group()) if found else None


def _canonical(number: str) -> str:
    number = number.replace(",", "")
    sign, number = ("-", number[1:]) if number.startswith("-") else ("", number)
    whole, dot, fraction = number.partition(".")
    number = sign + (whole.lstrip("0") or "0") + dot + fraction  # "072" -> "72", ".5" -> "0.5"
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    if number == "-0":
        number = "0"
    return number


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """Most frequent answer; ties go to the one that appeared first among the samples.

    ``None`` entries (no answer could be extracted) abstain; all-``None``
    returns ``None``. Answers are compared as given, so normalise them first
    (e.g. with :func:`extract_number`).
    """
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None
    # Counter.most_common orders equal counts by first insertion, i.e. first occurrence.
    return votes.most_common(1)[0][0]


def maj_at_k(
    samples_per_problem: Sequence[Sequence[str | None]], golds: Sequence[str], k: int
) -> float:
    """maj1@k: fraction of problems whose majority answer over their first ``k`` samples is gold.

    The first ``k`` samples are used (they are i.i.d., so any fixed subset is
    an unbiased draw); answers are compared with the gold by string equality
    after stripping whitespace, so pass canonical forms (``extract_number``).
    """
    if len(samples_per_problem) != len(golds):
        raise DataError(f"{len(samples_per_problem)} problems but {len(golds)} gold answers")
    if not golds:
        raise DataError("maj_at_k got no problems")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    correct = 0
    for p, (samples, gold) in enumerate(zip(samples_per_problem, golds, strict=True)):
        if len(samples) < k:
            raise DataError(f"problem {p} has {len(samples)} samples, fewer than k={k}")
        vote = majority_vote(samples[:k])
        correct += vote is not None and vote.strip() == gold.strip()
    return correct / len(golds)
