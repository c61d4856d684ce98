"""C4 cleaning: page agreement with TFDS clean_page (the tests' oracle) and throughput.

    PYTHONPATH=. python benchmarks/c4_fidelity.py [--pages 3000]

Prints the share of pages where ``c4_clean`` gives the oracle's result and
MB/s of page text for ``c4_clean`` and for the oracle (NLTK Punkt), on the
varied page set of tests/data/sources/test_c4_fidelity.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data" / "sources"))

import test_c4_fidelity as fidelity  # noqa: E402

from llamaforge.data.sources.c4 import C4Config, c4_clean  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3000)
    args = parser.parse_args()
    pages = fidelity.pages(args.pages, seed=1)
    mb = sum(len(p.encode()) for p in pages) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        words = Path(tmp) / "badwords.txt"
        words.write_text("\n".join(fidelity.BADWORDS) + "\n")
        config = C4Config(badwords_path=str(words))
        start = time.perf_counter()
        ours = [c4_clean(p, config)[0] for p in pages]
        ours_s = time.perf_counter() - start
    start = time.perf_counter()
    oracle = [fidelity.tfds_clean_page(p) for p in pages]
    oracle_s = time.perf_counter() - start
    agree = sum(a == b for a, b in zip(ours, oracle, strict=True)) / len(pages)
    print(f"pages {len(pages)} ({mb:.2f} MB); agreement with TFDS clean_page: {agree:.1%}")
    print(f"c4_clean: {mb / ours_s:.1f} MB/s; oracle (NLTK Punkt): {mb / oracle_s:.1f} MB/s")


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
