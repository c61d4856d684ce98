"""StackExchange reader: peak RSS against Posts.xml size (it must not grow with the input).

Writes synthetic ``Posts.xml`` files of each ``--mb`` size (a temporary directory, removed
afterwards; answers come a block after their questions, as in real dumps) and reads each
one with ``StackExchangeSource.process`` in a fresh child process, which reports its own
peak RSS (``ru_maxrss``) so the sizes do not share an allocator. A reader that grouped a
site in memory would grow by about the site's text size from one row to the next.

    python benchmarks/stackexchange_memory.py [--mb 20,80]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llamaforge.data.samples.stackexchange import write_large_posts

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.stackexchange import StackExchangeConfig, StackExchangeSource
start = time.process_time()
report = FilterReport()
source = StackExchangeSource(StackExchangeConfig(sites=[], tmp_dir=sys.argv[2]))
docs = sum(1 for _ in source.process(Path(sys.argv[1]), report))
print(json.dumps({"docs": docs, "cpu_s": time.process_time() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(posts: Path, tmp_dir: Path) -> dict:
    """Run the reader on ``posts`` in a child process; its docs, CPU seconds and peak RSS."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(posts), str(tmp_dir)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", default="20,80", help="comma-separated Posts.xml sizes in MB")
    args = parser.parse_args()
    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    print(
        f"{'Posts.xml MB':>12} {'questions':>10} {'docs':>8} {'MB/s/core':>10} {'peak RSS MB':>12}"
    )
    with tempfile.TemporaryDirectory(prefix="se-memory-") as folder:
        for mb in (float(x) for x in args.mb.split(",")):
            posts = Path(folder) / f"s{mb:g}.stackexchange.com" / "Posts.xml"
            started = time.time()
            questions = write_large_posts(posts, int(mb * (1 << 20)))
            size = posts.stat().st_size / (1 << 20)
            row = measure(posts, Path(folder))
            print(
                f"{size:12.1f} {questions:10d} {row['docs']:8d} {size / row['cpu_s']:10.2f} "
                f"{row['peak_rss_mb']:12.1f}   (written in {time.time() - started:.0f} s)"
            )
            posts.unlink()


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
