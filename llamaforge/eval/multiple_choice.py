"""Multiple-choice scoring by completion likelihood (paper §3, "Zero-shot" / "Few-shot").

The paper picks the completion with the highest likelihood "normalized by
the number of characters in the completion", except for OpenBookQA and BoolQ
where it follows Brown et al. (2020) and divides by the likelihood of the
completion given ``"Answer:"`` as context:
``log P(completion | context) - log P(completion | "Answer:")``. The three
``method`` values are:

* ``"raw"``: sum of log-probs (lm-eval's ``acc``);
* ``"chars"``: sum / the number of characters of the choice *without* the
  space that separates it from the prompt (:func:`choice_chars`). This is
  lm-eval's ``acc_norm``: lm-eval scores the continuation
  ``target_delimiter + choice`` (delimiter ``" "``) but divides by
  ``len(choice)``, the string ``doc_to_choice`` returned, and so did the 2021
  harness the paper cites (continuation ``" " + choice``, length of
  ``doc["choices"][i]``). Our continuations carry that space, so one leading
  space is not counted;
* ``"answer"``: the unconditional normalisation above with ``"Answer:"`` as
  the context (Brown et al.'s rule, which the paper follows). lm-eval's
  ``acc_mutual_info`` is the same difference but with an empty context (BOS
  alone), so the two are not the same number.

Ties go to the lowest choice index (``max`` over the list), so a model that
scores everything equally is not credited by chance ordering. Every request of
every example goes through one :func:`loglikelihood` call, so batching and
shared-input reuse work across the whole task.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.likelihood import loglikelihood

Method = Literal["raw", "chars", "answer"]
METHODS: tuple[str, ...] = ("raw", "chars", "answer")
UNCONDITIONAL_CONTEXT = "Answer:"
# lm-eval's default target_delimiter: what separates a choice from its prompt.
TARGET_DELIMITER = " "


@dataclass
class MCExample:
    """One question: ``context`` (prompt), candidate ``choices`` and the index of the right one."""

    context: str
    choices: Sequence[str]
    gold: int


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")


def choice_chars(continuation: str) -> int:
    """Characters ``"chars"`` divides by: the continuation less one leading delimiter space.

    ``" Paris"`` counts 5, as lm-eval counts ``len("Paris")``; a choice whose
    own text starts with a space (``"  x"``, scored as ``" " + " x"``) keeps
    that space, as ``len(" x")`` does in lm-eval; a continuation with no
    leading space counts whole.
    """
    return len(continuation.removeprefix(TARGET_DELIMITER))


def normalise_scores(
    method: str, choices: Sequence[str], conditional: list[float], unconditional: list[float]
) -> list[float]:
    """Apply the paper's normalisation ``method`` to per-choice log-likelihoods.

    Public so tasks with their own request layout (several questions per
    passage, partial scoring) rank choices with exactly the same rule.
    """
    if method == "raw":
        return conditional
    if method == "chars":
        lengths = [choice_chars(c) for c in choices]
        if 0 in lengths:
            empty = choices[lengths.index(0)]
            raise DataError(
                f"choice {empty!r} has no characters to normalise by (an empty choice); "
                "every choice needs text"
            )
        return [lp / n for lp, n in zip(conditional, lengths, strict=True)]
    return [lp - u for lp, u in zip(conditional, unconditional, strict=True)]


def best_choice(scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the lowest index (no credit for lucky ordering)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def score_choices(
    model: nn.Module,
    tokenizer: Any,
    context: str,
    choices: Sequence[str],
    method: Method = "chars",
    *,
    batch_size: int = 16,
) -> list[float]:
    """Score of each choice as a completion of ``context`` under ``method`` (higher is better)."""
    _check_method(method)
    requests = [(context, c) for c in choices]
    if method == "answer":
        requests += [(UNCONDITIONAL_CONTEXT, c) for c in choices]
    logprobs = [lp for lp, _ in loglikelihood(model, tokenizer, requests, batch_size=batch_size)]
    n = len(choices)
    return normalise_scores(method, choices, logprobs[:n], logprobs[n:])


def evaluate_multiple_choice(
    model: nn.Module,
    tokenizer: Any,
    examples: Iterable[MCExample],
    method: Method = "chars",
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, float]:
    """Accuracy under ``method`` (``acc``) and unnormalised (``acc_raw``) over ``examples``.

    Returns ``{"acc", "acc_raw", "n"}``; ``n`` is the number of examples.
    """
    _check_method(method)
    examples = list(examples)
    if not examples:
        raise DataError("evaluate_multiple_choice got no examples")
    for k, ex in enumerate(examples):
        if len(ex.choices) < 1 or not 0 <= ex.gold < len(ex.choices):
            raise DataError(
                f"example {k}: gold index {ex.gold} is not one of its {len(ex.choices)} choices"
            )
    outcome = rank_request_groups(
        model,
        tokenizer,
        [[(ex.context, c) for c in ex.choices] for ex in examples],
        [ex.gold for ex in examples],
        method,
        batch_size=batch_size,
        progress=progress,
    )
    return accuracy(outcome)


def accuracy(outcome: Sequence[tuple[bool, bool]]) -> dict[str, float]:
    """``{"acc", "acc_raw", "n"}`` from :func:`rank_request_groups`' per-question outcome."""
    return {
        "acc": sum(right for right, _ in outcome) / len(outcome),
        "acc_raw": sum(raw for _, raw in outcome) / len(outcome),
        "n": len(outcome),
    }


def rank_request_groups(
    model: nn.Module,
    tokenizer: Any,
    groups: Sequence[Sequence[tuple[str, str]]],
    golds: Sequence[int],
    method: Method,
    *,
    batch_size: int = 16,
    progress: bool = False,
    max_seq_len: int | None = None,
) -> list[tuple[bool, bool]]:
    """``(right under method, right by raw log-likelihood)`` per group of choice requests.

    Each group holds one ``(context, continuation)`` request per choice; every
    group goes through one :func:`loglikelihood` call, so batching and
    shared-prefix reuse span the whole task. The normalisation counts the
    characters of each continuation less its leading delimiter space
    (:func:`choice_chars`, lm-eval's ``len(choice)``).
    """
    _check_method(method)
    requests: list[tuple[str, str]] = []
    for group in groups:
        requests += group
        if method == "answer":
            requests += [(UNCONDITIONAL_CONTEXT, cont) for _, cont in group]
    results = loglikelihood(
        model,
        tokenizer,
        requests,
        batch_size=batch_size,
        progress=progress,
        max_seq_len=max_seq_len,
    )
    outcome, pos = [], 0
    for group, gold in zip(groups, golds, strict=True):
        n = len(group)
        conditional = [lp for lp, _ in results[pos : pos + n]]
        pos += n
        unconditional: list[float] = []
        if method == "answer":
            unconditional = [lp for lp, _ in results[pos : pos + n]]
            pos += n
        continuations = [cont for _, cont in group]
        scores = normalise_scores(method, continuations, conditional, unconditional)
        outcome.append((best_choice(scores) == gold, best_choice(conditional) == gold))
    return outcome


def winogrande_split(sentence: str, option: str) -> tuple[str, str]:
    """``(sentence up to the blank + option, " " + rest)``: lm-eval's partial-scoring split."""
    if sentence.count("_") != 1:
        raise DataError(f"a WinoGrande sentence needs exactly one '_' blank, got {sentence!r}")
    blank = sentence.index("_")
    return sentence[:blank] + option, " " + sentence[blank + 1 :].strip()


def winogrande_partial(
    model: nn.Module,
    tokenizer: Any,
    sentence: str,
    options: Sequence[str],
    *,
    batch_size: int = 16,
) -> list[float]:
    """``log P(suffix | prefix with option)`` for each option ("partial scoring").

    WinoGrande options fill a blank, so the part *after* the blank is the same
    for every option and only it is scored; its log-probability is comparable
    across options without normalisation (Trinh & Le 2018, used by GPT-3 and
    LLaMA).
    """
    requests = [winogrande_split(sentence, o) for o in options]
    return [lp for lp, _ in loglikelihood(model, tokenizer, requests, batch_size=batch_size)]
