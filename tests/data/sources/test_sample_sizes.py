"""``doc_bytes`` makes sample documents realistically long without changing what they test."""

import random

import pytest

from llamaforge.data.samples import commoncrawl
from llamaforge.data.sources import registry
from llamaforge.data.sources.base import FilterReport

# name -> (n_docs covering every role of the writer, doc_bytes asked for). CommonCrawl is
# checked on its pages alone below: its writer trains fastText models, which is slow and
# (on this tiny data) occasionally fails with fastText's "Encountered NaN".
CASES = {
    "c4": (10, 3000),
    "github": (12, 5000),
    "wikipedia": (6, 5000),
    "books": (6, 40_000),
    "arxiv": (9, 20_000),
    "stackexchange": (4, 3000),
}


def run(name, directory, n_docs, doc_bytes):
    registry.write_samples(name, directory, n_docs=n_docs, seed=0, doc_bytes=doc_bytes)
    module = __import__(f"{registry.SAMPLES_PACKAGE}.{name}", fromlist=["_"])
    settings = module.sample_config(directory) if hasattr(module, "sample_config") else {}
    source = registry.build_source(name, settings, directory)
    report, docs = FilterReport(), []
    for path in source.list_inputs(directory):
        docs.extend(source.process(path, report))
    kept = list(source.global_filter(docs, report))
    return kept, report


@pytest.mark.parametrize("name", sorted(CASES))
def test_doc_bytes_grows_documents_and_keeps_every_outcome(tmp_path, name):
    n_docs, doc_bytes = CASES[name]
    small, small_report = run(name, tmp_path / "small", n_docs, 0)
    large, large_report = run(name, tmp_path / "large", n_docs, doc_bytes)
    # Same roles, same outcomes: every filter still drops what it dropped, the rest is kept.
    assert len(large) == len(small) > 0
    assert dict(large_report.dropped_docs) == dict(small_report.dropped_docs)
    assert set(large_report.bad_input) == set(small_report.bad_input)
    # Kept text (after cleaning, which removes markup and noise) is near the asked-for size.
    mean = sum(len(doc.text.encode()) for doc in large) / len(large)
    small_mean = sum(len(doc.text.encode()) for doc in small) / len(small)
    assert 0.3 * doc_bytes < mean < 2.0 * doc_bytes
    assert mean > 2 * small_mean


@pytest.mark.parametrize("kind", ["good", "shop", "german", "french", "salad"])
def test_commoncrawl_pages_grow_with_doc_bytes(kind):
    default = commoncrawl._page(kind, random.Random(0))
    assert default == commoncrawl._page(kind, random.Random(0), 0)  # tests' pages unchanged
    grown = "\n".join(commoncrawl._page(kind, random.Random(0), 4000))
    assert 0.6 * 4000 < len(grown.encode()) < 1.6 * 4000
    assert len(grown) > 3 * len("\n".join(default))


def test_typical_sizes_are_the_real_averages():
    sizes = {name: registry.typical_doc_bytes(name) for name in [*CASES, "commoncrawl"]}
    assert sizes["c4"] == 2200 and sizes["books"] == 500_000 and sizes["arxiv"] == 50_000
    assert all(2000 <= sizes[n] <= 8000 for n in ("commoncrawl", "github", "wikipedia"))
