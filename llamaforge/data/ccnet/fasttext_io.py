"""Loading, querying and training fastText classifiers (language id, Wikipedia-reference).

fastText reads one example per line, so documents are flattened with
:func:`one_line` both when training and when predicting. Training is made
deterministic (one thread, fixed seed) so the tiny models the tests and the
sample writer build are the same on every machine; ``lr=0.5`` and a few
epochs avoid most NaN losses fastText's defaults hit on tiny data, and a run
that still reports one is retried with the next seed (still deterministic).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llamaforge.errors import ConfigError

LABEL_PREFIX = "__label__"


def one_line(text: str) -> str:
    """``text`` on a single line (fastText treats a newline as the end of an example)."""
    return " ".join(text.split())


def load_fasttext(path: str | Path, field: str) -> Any:
    """The fastText model at ``path``; a ConfigError naming ``field`` if it cannot be read."""
    import fasttext

    if not Path(path).is_file():
        raise ConfigError(f"{field}: fastText model {path} does not exist")
    try:
        return fasttext.load_model(str(path))
    except ValueError as error:
        raise ConfigError(f"{field}: {path} is not a fastText model ({error})") from error


def label_scores(model: Any, text: str) -> dict[str, float]:
    """Probability of every label of ``model`` for ``text`` (labels without ``__label__``)."""
    labels, probs = model.predict(one_line(text), k=-1)
    return {
        label.removeprefix(LABEL_PREFIX): float(p) for label, p in zip(labels, probs, strict=True)
    }


def _train_without_nan(fasttext: Any, train_file: str, settings: dict[str, Any]) -> Any:
    """Retry a run that reports NaN with the next seed (up to seven times).

    On tiny data fastText occasionally reports a NaN loss for reasons other
    than divergence: a lower learning rate fails as often, the same run
    usually passes when repeated, and failures cluster when the CPU is busy.
    """
    settings = dict(settings)
    attempts = 8
    for attempt in range(attempts):
        try:
            return fasttext.train_supervised(input=train_file, **settings)
        except RuntimeError as error:
            if "NaN" not in str(error) or attempt == attempts - 1:
                raise
            settings["seed"] = settings.get("seed", 0) + 1
    raise AssertionError("unreachable")


def train_classifier(
    examples: Iterable[tuple[str, str]], out_path: str | Path, **params: Any
) -> Path:
    """Train a supervised fastText model on ``(label, text)`` pairs; write it atomically.

    ``params`` override fastText's ``train_supervised`` arguments (``dim``,
    ``epoch``, ``lr``, ``wordNgrams``, ``minn``/``maxn``, ``bucket``, ...).
    """
    import fasttext

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"lr": 0.5, "epoch": 10, "dim": 32, "thread": 1, "seed": 0, "verbose": 0}
    settings.update(params)
    fd, train_file = tempfile.mkstemp(prefix=out.name, suffix=".train.txt", dir=out.parent)
    tmp_model = out.with_name(out.name + ".tmp")
    try:
        n = 0
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for label, text in examples:
                line = one_line(text)
                if line:
                    f.write(f"{LABEL_PREFIX}{label} {line}\n")
                    n += 1
        if n == 0:
            raise ConfigError(f"no training examples for {out}")
        model = _train_without_nan(fasttext, train_file, settings)
        model.save_model(str(tmp_model))
        os.replace(tmp_model, out)
    finally:
        Path(train_file).unlink(missing_ok=True)
        tmp_model.unlink(missing_ok=True)
    return out
