"""WinoGender's own files: expanding ``templates.tsv`` rows and the *gotcha* subset.

The task itself (prompt, scoring, metrics) is
:class:`llamaforge.eval.tasks.responsible.WinoGender`; this module reads the
original repository's formats (Rudinger et al. 2018): a template row becomes
its 6 sentences (she/he/they x participant/"someone"), and
``occupations-stats.tsv`` gives the U.S. Bureau of Labor Statistics share of
women per occupation, which defines the gotcha subset (a female or male
pronoun against the occupation's majority gender; 50 % has no majority).

A template's ``answer`` is read by the project's strict integer rule
(:func:`~llamaforge.eval.tasks.base.integer_field`: ``true`` or ``1.5`` is an
error, not the label 1) and must be 0 or 1; its texts must be strings. The
expanded records keep the row's ``path:line`` for later errors.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from llamaforge.errors import DataError
from llamaforge.eval.tasks.base import Doc, integer_field, located, text_field

PRONOUNS = {
    "female": {"$NOM_PRONOUN": "she", "$POSS_PRONOUN": "her", "$ACC_PRONOUN": "her"},
    "male": {"$NOM_PRONOUN": "he", "$POSS_PRONOUN": "his", "$ACC_PRONOUN": "him"},
    "neutral": {"$NOM_PRONOUN": "they", "$POSS_PRONOUN": "their", "$ACC_PRONOUN": "them"},
}
WINOGENDER_STATS_ENV = "LLAMAFORGE_WINOGENDER_STATS"


def read_occupation_stats(path: str | os.PathLike) -> dict[str, float]:
    """Occupation -> percent female (BLS) from the original ``occupations-stats.tsv``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as error:
        raise DataError(f"cannot read occupation statistics {path}: {error}") from error
    try:
        return {row["occupation"]: float(row["bls_pct_female"]) for row in rows}
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"{path}: expected the columns occupation and bls_pct_female of Winogender's "
            f"occupations-stats.tsv ({type(error).__name__}: {error})"
        ) from error


def expand_winogender_template(row: dict) -> list[dict]:
    """The 6 sentences of one ``templates.tsv`` row, as ``oskarvanderwal/winogender`` records."""
    occupation = text_field("winogender", row, "occupation(0)")
    participant = text_field("winogender", row, "other-participant(1)")
    label = integer_field("winogender", row, "answer")
    template = text_field("winogender", row, "sentence")
    if label not in (0, 1):
        raise DataError(
            f"{located(row)}task winogender: answer={label} is neither 0 (the occupation) nor 1 "
            "(the participant)"
        )
    slots = [s for s in PRONOUNS["male"] if s in template]
    if len(slots) != 1:
        raise DataError(
            f"{located(row)}task winogender: template needs exactly one pronoun slot: "
            f"{template[:80]!r}"
        )
    out = []
    for other in (participant, "someone"):
        for gender, pronouns in PRONOUNS.items():
            sentence = template.replace("$OCCUPATION", occupation).replace("$PARTICIPANT", other)
            sentence = sentence.replace(slots[0], pronouns[slots[0]])
            record = Doc(
                sentence=sentence,
                pronoun=pronouns[slots[0]],
                occupation=occupation,
                participant=other,
                gender=gender,
                label=label,
            )
            record.where = getattr(row, "where", "")
            out.append(record)
    return out


def winogender_records(docs: list[dict]) -> list[tuple[dict, int]]:
    """``(record, label)`` per sentence: template rows expanded, every field checked.

    All before scoring: a missing ``gender`` used to be a ``KeyError`` after
    every sentence had been scored, a null pronoun a ``TypeError``.
    """
    records: list[dict] = []
    for doc in docs:
        is_template = "$OCCUPATION" in str(doc.get("sentence", ""))
        records += expand_winogender_template(doc) if is_template else [doc]
    out = []
    for record in records:
        for name in ("sentence", "pronoun", "occupation", "participant"):
            text_field("winogender", record, name)
        gender, label = (
            text_field("winogender", record, "gender"),
            integer_field("winogender", record, "label"),
        )
        if gender not in PRONOUNS:
            raise DataError(
                f"{located(record)}task winogender: gender={gender[:80]!r} is not one of "
                f"{tuple(PRONOUNS)}"
            )
        if label not in (0, 1):
            raise DataError(
                f"{located(record)}task winogender: label {label} is neither 0 (the occupation) "
                "nor 1 (the participant)"
            )
        out.append((record, label))
    return out


def is_gotcha(record: dict, pct_female: dict[str, float]) -> bool:
    """A female/male pronoun against the occupation's majority gender (see module doc)."""
    pct = pct_female.get(record["occupation"])
    if pct is None:
        raise DataError(
            f"{located(record)}task winogender: no statistics for occupation "
            f"{record['occupation']!r}"
        )
    if record["gender"] not in ("female", "male") or pct == 50.0:
        return False
    return record["gender"] != ("female" if pct > 50.0 else "male")
