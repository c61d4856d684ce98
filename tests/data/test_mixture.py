"""The mixture a build writes is the one the trainer's TokenLoader realises.

Three fake sources of very different sizes are built with weights 6 : 3 : 1;
TokenLoader then draws 4,000 sequences from ``mixture.toml``. Tolerances:
the realised shares must be within 0.02 of the weights (the multinomial
standard deviation is at most 0.008 here, so > 2.5 sigma), and the small
source's realised epochs within 15 % of the epochs the report planned for
that many tokens (5 % noise from the draws plus whole-window rounding).
"""

from __future__ import annotations

import random
import tomllib

import pytest

from llamaforge.data.build import build
from llamaforge.data.build_config import DataBuildConfig
from llamaforge.data.loader import TokenLoader
from tests.data.test_build import (  # noqa: F401 (fixtures)
    WORDS,
    fake_sources,
    tiny_tokenizer,
    write_docs,
)

SEQ_LEN, BATCH, BATCHES = 16, 8, 500


def docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"doc {i} " + " ".join(rng.choice(WORDS) for _ in range(25)) for i in range(n)]


def test_loader_realises_the_built_mixture(tmp_path, fake_sources, tiny_tokenizer):  # noqa: F811
    sizes = {"alpha": 450, "beta": 120, "gamma": 12}
    weights = {"alpha": 6.0, "beta": 3.0, "gamma": 1.0}
    for i, (name, n) in enumerate(sizes.items()):
        write_docs(tmp_path / name / "part.txt", docs(n, i))
    total = SEQ_LEN * BATCH * BATCHES
    table = {
        "build": {"output": "out", "tokenizer": str(tiny_tokenizer), "shard_docs": 50},
        "mixture": {"total_tokens": total},
        "sources": {n: {"input": n, "weight": w, "epochs": 1.0} for n, w in weights.items()},
    }
    report = build(DataBuildConfig.from_dict(table, tmp_path), progress=False).report
    data = tomllib.loads((tmp_path / "out" / "mixture.toml").read_text())["data"]
    sources = [(s["path"], s["weight"]) for s in data["sources"]]
    assert [w for _, w in sources] == list(weights.values())

    loader = TokenLoader(sources, SEQ_LEN, BATCH, val_fraction=0.0, seed=data["seed"])
    for _ in range(BATCHES):
        inputs, _ = loader.next_batch()
    assert inputs.max() < loader.vocab_size
    taken = sum(loader.cursors)
    assert taken == BATCH * BATCHES
    for (name, weight), cursor in zip(weights.items(), loader.cursors, strict=True):
        assert cursor / taken == pytest.approx(weight / 10, abs=0.02), name

    gamma = report["sources"]["gamma"]
    assert gamma["epochs_planned"] == pytest.approx(0.1 * total / gamma["tokens"])
    assert gamma["epochs_planned"] > 3  # a small source is repeated ...
    assert loader.epochs[2] == pytest.approx(gamma["epochs_planned"], rel=0.15)  # ... as planned
    assert loader.epochs[0] < 1  # the large one is not even seen once
