"""Data pipeline throughput: MB/s per core of each source's filtering (process + global filter).

For each source with a sample writer, writes sample dumps of about ``--mb``
MB (a temporary directory, removed afterwards; sample models are trained
there and not timed), then runs ``Source.process`` on every file and
``Source.global_filter`` over the result in this one process. Throughput is
input bytes as stored on disk (compressed where the format is) divided by
CPU seconds, i.e. per core: a build with N worker processes does roughly N
times that in stage 1.

Documents are written at their source's real average size (each sample
writer's ``TYPICAL_DOC_BYTES``: a 2.2 KB C4 page, a 500 KB book, ...), since
per-document overhead would dominate on the tests' tiny documents and give a
figure no real dump reaches; ``--small-docs`` measures those instead.

The synthetic text draws from small vocabularies, so it compresses several
times better than real text (gzip ~8x vs ~3x); per stored MB it therefore
holds more documents than a real dump. The ``raw`` columns divide the
decompressed size instead, which does not depend on that.
``--profile N`` prints cProfile's top ``N`` functions of each source.

Each source runs in its own fresh (spawned) process, which reports its peak RSS
(``VmHWM``): ``base RSS`` after imports (torch comes in with ``llamaforge.data``),
``peak RSS`` at the end, including the sample writing and the kept documents
that this benchmark holds for ``global_filter`` (a build streams them to disk).
The first and last lines print the load average and the CPU count.

    python benchmarks/data_throughput.py [--mb 4] [--sources c4,wikipedia] [--profile 25]
"""

from __future__ import annotations

import argparse
import bz2
import cProfile
import gzip
import importlib
import io
import lzma
import multiprocessing
import pstats
import tempfile
import time
from pathlib import Path

import py7zr
from common import spread
from tqdm.auto import tqdm

from llamaforge.data.sources import registry
from llamaforge.data.sources.base import FilterReport
from llamaforge.data.sources.textio import STREAM_ERRORS

_MAGIC = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ": lzma.open}


def raw_size(path: Path) -> int:
    """Decompressed bytes of one input (what a broken stream yields before it breaks)."""
    if path.name.endswith(".7z"):
        with py7zr.SevenZipFile(path) as archive:
            return sum(info.uncompressed or 0 for info in archive.list())
    with open(path, "rb") as stream:
        head = stream.read(6)
    opener = next((o for magic, o in _MAGIC.items() if head.startswith(magic)), None)
    if opener is None:
        return path.stat().st_size
    size = 0
    with opener(path, "rb") as stream:
        try:
            while chunk := stream.read1(1 << 20):
                size += len(chunk)
        except STREAM_ERRORS:
            pass
    return size


def write_inputs(
    name: str, folder: Path, target_bytes: int, seed: int, doc_bytes: int
) -> tuple[Path, dict]:
    """Sample dumps of about ``target_bytes``: resize ``n_docs`` until the size is close.

    Starts from 20 documents, the most each writer needs to include every kind of bad
    input it knows; only sources whose documents are large (books) end up with fewer.
    """
    n_docs = 20
    for attempt in range(4):
        directory = folder / f"try{attempt}"
        paths = registry.write_samples(
            name, directory, n_docs=n_docs, seed=seed, doc_bytes=doc_bytes
        )
        size = sum(p.stat().st_size for p in paths)
        if 0.7 * target_bytes <= size <= 1.5 * target_bytes:
            break
        n_docs = max(6, round(n_docs * target_bytes / max(size, 1)))
    module = importlib.import_module(f"{registry.SAMPLES_PACKAGE}.{name}")
    settings = module.sample_config(directory) if hasattr(module, "sample_config") else {}
    return directory, settings


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux ``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_in_child(*args) -> dict:
    """:func:`measure` in a fresh spawned process, so each source's peak RSS is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, args)


def measure(name: str, target_bytes: int, seed: int, small_docs: bool, profile: int) -> dict:
    base_rss = peak_rss_mb()
    doc_bytes = 0 if small_docs else registry.typical_doc_bytes(name)
    with tempfile.TemporaryDirectory() as tmp:
        directory, settings = write_inputs(name, Path(tmp), target_bytes, seed, doc_bytes)
        source = registry.build_source(name, settings, tmp)
        inputs = source.list_inputs(directory)
        report, docs = FilterReport(), []
        profiler = cProfile.Profile() if profile else None
        start = time.process_time()
        if profiler is not None:
            profiler.enable()
        per_file = []  # MB/s per core of each file's ``process``: the noise across files
        for path in tqdm(inputs, desc=name, unit="file", leave=False):
            file_start = time.process_time()
            docs.extend(source.process(path, report))
            seconds = max(time.process_time() - file_start, 1e-9)
            per_file.append(path.stat().st_size / 1e6 / seconds)
        kept = list(source.global_filter(docs, report))
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - start
        size = sum(p.stat().st_size for p in inputs)
        raw = sum(raw_size(p) for p in inputs)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
        print(f"--- {name}: cProfile, top {profile} by own time ---\n{out.getvalue()}")
    kept_bytes = sum(len(doc.text.encode("utf-8")) for doc in kept)
    return {
        "source": name,
        "files": len(inputs),
        "mb": size / 1e6,
        "raw_mb": raw / 1e6,
        "docs": len(kept),
        "kb_per_doc": kept_bytes / max(len(kept), 1) / 1e3,
        "cpu": cpu,
        "base_rss": base_rss,
        "peak_rss": peak_rss_mb(),
        "per_file": per_file,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0, help="sample input per source, MB")
    parser.add_argument("--sources", default="", help="comma-separated (default: all available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--small-docs", action="store_true", help="the tests' tiny documents, not real sizes"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions"
    )
    args = parser.parse_args()
    available = [n for n in registry.available_samples() if n in registry.available_sources()]
    names = args.sources.split(",") if args.sources else available
    missing = [n for n in names if n not in available]
    if missing:
        parser.error(f"no source module or sample writer for: {', '.join(missing)}")
    target = int(args.mb * 1e6)
    rows = [measure_in_child(n, target, args.seed, args.small_docs, args.profile) for n in names]
    print(
        "| source | files | input MB | raw MB | kept docs | kept KB/doc | CPU s "
        "| MB/s per core | raw MB/s per core | base RSS MB | peak RSS MB "
        "| per-file MB/s (process), min / median / max |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        cpu = max(r["cpu"], 1e-9)
        print(
            f"| {r['source']} | {r['files']} | {r['mb']:.2f} | {r['raw_mb']:.2f} | {r['docs']:,} "
            f"| {r['kb_per_doc']:.1f} | {r['cpu']:.2f} | {r['mb'] / cpu:.2f} "
            f"| {r['raw_mb'] / cpu:.2f} | {r['base_rss']:.0f} | {r['peak_rss']:.0f} "
            f"| {spread(r['per_file'], unit='MB/s', digits=3)} |"
        )


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
