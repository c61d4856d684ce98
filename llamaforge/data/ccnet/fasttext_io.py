"""Loading, querying and training fastText classifiers (language id, Wikipedia-reference).

fastText reads one example per line, so documents are flattened with
:func:`one_line` both when training and when predicting. Training is made
deterministic (one thread, fixed seed) so the tiny models the tests and the
sample writer build are the same on every machine. Training runs in a fresh
process (see :func:`_train_in_fresh_process` for the fastText bug that makes
this necessary).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llamaforge.data.ccnet.fasttext_format import check_fasttext_file
from llamaforge.errors import ConfigError

LABEL_PREFIX = "__label__"


def one_line(text: str) -> str:
    """``text`` on a single line (fastText treats a newline as the end of an example)."""
    return " ".join(text.split())


def load_fasttext(path: str | Path, field: str) -> Any:
    """The fastText model at ``path``; a ConfigError naming ``field`` if it cannot be read.

    The file is walked by :func:`check_fasttext_file` before fastText's C++
    loader sees it, because that loader trusts the sizes in the file: a
    damaged header can corrupt its heap instead of raising. Errors the loader
    still raises (a ValueError, ``std::bad_alloc`` as MemoryError, a
    RuntimeError) become ConfigErrors too.
    """
    import fasttext

    if not Path(path).is_file():
        raise ConfigError(f"{field}: fastText model {path} does not exist")
    check_fasttext_file(path, field)
    try:
        return fasttext.load_model(str(path))
    except ValueError as error:
        raise ConfigError(f"{field}: {path} is not a fastText model ({error})") from error
    except (MemoryError, RuntimeError) as error:
        raise ConfigError(
            f"{field}: fastText could not load {path} ({type(error).__name__}: {error}); "
            "the file is damaged or not a fastText model"
        ) from error


def label_scores(model: Any, text: str) -> dict[str, float]:
    """Probability of every label of ``model`` for ``text`` (labels without ``__label__``)."""
    labels, probs = model.predict(one_line(text), k=-1)
    return {
        label.removeprefix(LABEL_PREFIX): float(p) for label, p in zip(labels, probs, strict=True)
    }


# Run in a fresh interpreter: imports fastText, trains, saves. Arguments as JSON.
_TRAIN_SCRIPT = """
import json, sys
import fasttext
args = json.loads(sys.argv[1])
fasttext.train_supervised(input=args["input"], **args["settings"]).save_model(args["output"])
"""


def _train_in_fresh_process(train_file: str, settings: dict[str, Any], out_file: Path) -> None:
    """Train with ``fasttext.train_supervised`` in a new process, retrying NaN runs.

    Why a process: fastText's current sources keep the input matrix in an
    ``intgemm::AlignedVector``, which is not zero-initialised, and
    ``DenseMatrix::uniform`` with ``thread < 10`` fills only ``thread`` tenths
    of it. In a fresh process the rest comes from zeroed pages and training is
    deterministic; in a long-lived process glibc recycles freed heap memory
    into it and training hits "Encountered NaN" at random (we measured about
    one run in ten, and whole processes where every run failed). A retry in a
    new process with the next seed covers the remaining rare case.
    """
    settings = dict(settings)
    attempts = 4
    for attempt in range(attempts):
        job = {"input": train_file, "settings": settings, "output": str(out_file)}
        done = subprocess.run(
            [sys.executable, "-c", _TRAIN_SCRIPT, json.dumps(job)],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return
        if "Encountered NaN" not in done.stderr or attempt == attempts - 1:
            raise RuntimeError(f"fastText training of {out_file} failed:\n{done.stderr[-2000:]}")
        settings["seed"] = settings.get("seed", 0) + 1


def train_classifier(
    examples: Iterable[tuple[str, str]], out_path: str | Path, **params: Any
) -> Path:
    """Train a supervised fastText model on ``(label, text)`` pairs; write it atomically.

    ``params`` override fastText's ``train_supervised`` arguments (``dim``,
    ``epoch``, ``lr``, ``wordNgrams``, ``minn``/``maxn``, ``bucket``, ...).
    """
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
        _train_in_fresh_process(train_file, settings, tmp_model)
        os.replace(tmp_model, out)
    finally:
        Path(train_file).unlink(missing_ok=True)
        tmp_model.unlink(missing_ok=True)
    return out
