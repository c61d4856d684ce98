"""Data pipeline throughput: MB/s per core of each source's filtering (process + global filter).

For each source with a sample writer, writes sample dumps of about ``--mb``
MB (a temporary directory, removed afterwards; sample models are trained
there and not timed), then runs ``Source.process`` on every file and
``Source.global_filter`` over the result in this one process. Throughput is
input bytes as stored on disk (compressed where the format is) divided by
CPU seconds, i.e. per core: a build with N worker processes does roughly N
times that in stage 1.

    python benchmarks/data_throughput.py [--mb 4] [--sources c4,wikipedia]
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

from llamaforge.data.sources import registry
from llamaforge.data.sources.base import FilterReport


def write_inputs(name: str, folder: Path, target_bytes: int, seed: int) -> tuple[Path, dict]:
    """Sample dumps of about ``target_bytes``: resize ``n_docs`` until the size is close."""
    n_docs = 20
    for attempt in range(4):
        directory = folder / f"try{attempt}"
        paths = registry.write_samples(name, directory, n_docs=n_docs, seed=seed)
        size = sum(p.stat().st_size for p in paths)
        if size >= 0.7 * target_bytes:
            break
        n_docs = max(n_docs + 1, int(n_docs * target_bytes / max(size, 1) * 1.1))
    module = importlib.import_module(f"{registry.SAMPLES_PACKAGE}.{name}")
    settings = module.sample_config(directory) if hasattr(module, "sample_config") else {}
    return directory, settings


def measure(name: str, target_bytes: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        directory, settings = write_inputs(name, Path(tmp), target_bytes, seed)
        source = registry.build_source(name, settings, tmp)
        inputs = source.list_inputs(directory)
        report, docs = FilterReport(), []
        start = time.process_time()
        for path in tqdm(inputs, desc=name, unit="file", leave=False):
            docs.extend(source.process(path, report))
        kept = list(source.global_filter(docs, report))
        cpu = time.process_time() - start
        size = sum(p.stat().st_size for p in inputs)
    return {"source": name, "files": len(inputs), "mb": size / 1e6, "docs": len(kept), "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="sample input per source, MB")
    parser.add_argument("--sources", default="", help="comma-separated (default: all available)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    available = [n for n in registry.available_samples() if n in registry.available_sources()]
    names = args.sources.split(",") if args.sources else available
    missing = [n for n in names if n not in available]
    if missing:
        parser.error(f"no source module or sample writer for: {', '.join(missing)}")
    rows = [measure(name, int(args.mb * 1e6), args.seed) for name in names]
    print("| source | files | input MB | kept docs | CPU s | MB/s per core |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        rate = r["mb"] / r["cpu"] if r["cpu"] > 0 else float("inf")
        print(
            f"| {r['source']} | {r['files']} | {r['mb']:.2f} | {r['docs']:,} "
            f"| {r['cpu']:.2f} | {rate:.2f} |"
        )


if __name__ == "__main__":
    main()
