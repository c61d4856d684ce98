"""``llamaforge data build``: raw dumps -> filtered shards -> tokens -> the Table 1 mixture.

Stages (the units of work are in :mod:`llamaforge.data.build_stages`):

1. per source, per input file, in parallel: ``Source.process`` -> filtered
   ``OUT/<source>/filtered/<key>.jsonl.zst`` + a report per file;
2. per source: ``Source.global_filter`` over all its filtered documents ->
   ``OUT/<source>/final/`` shards + report;
3. per source: ``final/`` -> ``OUT/<source>/tokens/`` (only with a tokenizer);
4. ``OUT/mixture.toml`` (the trainer's ``[data]`` sources and weights) and
   ``OUT/report.json`` / ``report.md`` (:mod:`llamaforge.data.mixture`).

Every stage is restartable: finished output is skipped on a re-run and
partial output is never taken for finished. Finished output is reused only
when the recipe that made it (source settings, code versions, inputs; see
:mod:`llamaforge.data.build_recipe`) equals the current one; otherwise it is
redone, and ``report.json``'s ``"redone"`` lists each output redone and why
(``"reused"`` counts the rest), so a changed filter setting never yields old shards. A worker that crashes on one file
(a bug: bad *data* is counted, never raised) is reported with the file name;
other files keep their output, and that source's later stages wait for a
re-run, so they never silently miss a file.

**The output folder** never overlaps an input (refused in
:mod:`llamaforge.data.build_config`, so the build never reads its own output),
and the build replaces only files it wrote: a ``report.json``, ``report.md``
or ``mixture.toml`` there that it did not write, or a file where the folder
should be, is a :class:`ConfigError` before any work (:mod:`llamaforge.data.outputs`).

**Executors.** The per-file function is submitted to a
``concurrent.futures.Executor``: a ``ProcessPoolExecutor`` of ``workers``
processes on one machine (``workers = 1`` runs in this process, for
debugging), or, beyond one machine, Dask's ``distributed.Client(address)``
through its ``concurrent.futures`` adapter, so both paths run the very same
task code. A Slurm cluster is a ``dask_jobqueue.SLURMCluster`` whose
scheduler address goes into ``[build].scheduler``; workers need the output
folder on a shared file system. Why Dask rather than datatrove or Ray:

* datatrove would own the whole pipeline (its readers, writers, dedup and
  stats blocks replace our :class:`Source` contract and report format) to
  give us its executors; we only need "run this function on that file".
* Ray can do that too, but adds its own object store and runtime for
  nothing this build needs, while Dask's executor *is* a
  ``concurrent.futures.Executor`` with a local-cluster mode we can test here,
  and ``dask-jobqueue`` covers Slurm/PBS/SGE clusters without a daemon.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llamaforge.data.build_config import DataBuildConfig, SourceSection, check_not_overlapping
from llamaforge.data.build_recipe import file_recipe, source_settings
from llamaforge.data.build_stages import (
    FILTERED,
    file_status,
    finish_source,
    input_keys,
    process_file,
)
from llamaforge.data.mixture import source_summary, write_mixture_toml, write_reports
from llamaforge.data.outputs import check_build_outputs
from llamaforge.data.sources.base import Source
from llamaforge.data.sources.registry import build_source
from llamaforge.errors import ConfigError


class InlineExecutor(cf.Executor):
    """Runs each task at ``submit`` in this process: ``workers = 1``, for debuggers and profilers."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # the caller reports it like a worker's crash
            future.set_exception(error)
        return future


@contextlib.contextmanager
def open_executor(executor: str, workers: int, scheduler: str = "") -> Iterator[cf.Executor]:
    """The executor the build submits to (see the module docstring)."""
    if executor == "dask":
        from distributed import Client, LocalCluster

        if scheduler:
            with Client(scheduler) as client:
                yield client.get_executor(pure=False)
            return
        with (
            LocalCluster(
                n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client.get_executor(pure=False)
    elif workers == 1:
        yield InlineExecutor()
    else:
        with cf.ProcessPoolExecutor(workers) as pool:
            yield pool


@dataclass
class BuildResult:
    output: Path
    report: dict[str, Any]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return self.report["failures"]


def list_source_inputs(
    section: SourceSection, source: Source, output: Path | None = None
) -> dict[str, Path]:
    """Output key -> input file for every input of a source (folders via ``list_inputs``).

    With ``output``, a listed file inside it (a symlink in the input tree pointing
    into the output) is refused like an overlapping config (:mod:`.build_config`).
    """
    pairs: list[tuple[Path, Path]] = []
    for root in section.inputs:
        if root.is_dir():
            pairs += [(root, path) for path in source.list_inputs(root)]
        elif root.is_file():
            pairs.append((root.parent, root))
        else:
            raise ConfigError(
                f"[sources.{section.name}].input: {root} does not exist; "
                "point it at the dump (or run `llamaforge data samples` for sample dumps)"
            )
    if output is not None:
        for _, path in pairs:
            check_not_overlapping(output, path, section.name)
    return input_keys(pairs)


def _failure(source: str, where: str, error: BaseException) -> dict[str, Any]:
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    print(f"llamaforge data build: {source} {where} failed: {error!r}", file=sys.stderr)
    return {"source": source, "where": where, "error": repr(error), "traceback": trace}


def build(
    config: DataBuildConfig,
    *,
    workers: int | None = None,
    progress: bool = True,
    executor: cf.Executor | None = None,
    config_path: str | Path | None = None,
) -> BuildResult:
    """Run (or continue) a build; ``executor`` overrides the configured one (tests, notebooks)."""
    settings = config.build
    workers = workers or settings.workers
    out = settings.output
    if settings.tokenizer is not None and not settings.tokenizer.is_file():
        raise ConfigError(
            f"[build].tokenizer {settings.tokenizer} does not exist; train one with "
            "`llamaforge train-tokenizer` or leave it out to stop before tokenization"
        )
    check_build_outputs(out)  # a file in the way, or a user's report.md: refused before any work
    for section in config.sources:  # a config built in Python skipped from_dict's check
        for path in section.inputs:
            check_not_overlapping(out, path, section.name)
    out.mkdir(parents=True, exist_ok=True)
    sources = {s.name: build_source(s.name, s.settings, config.base_dir) for s in config.sources}
    plans = {s.name: list_source_inputs(s, sources[s.name], out) for s in config.sources}
    with contextlib.ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(
                open_executor(settings.executor, workers, settings.scheduler)
            )
        records, failures, redone, reused = _stage_files(executor, sources, plans, out, progress)
        finished = _stage_sources(executor, sources, plans, records, failures, config, progress)
    for name, result in sorted(finished.items()):
        if result["final"].get("redone"):
            redone.append({"source": name, "stage": "final", "why": result["final"]["redone"]})
        else:
            reused += 1
    total_weight = sum(s.weight for s in config.sources)
    rows = {
        s.name: source_summary(
            s.weight,
            s.weight / total_weight,
            s.epochs,
            config.total_tokens,
            sorted(records[s.name], key=lambda r: r["input"]),
            len(plans[s.name]),
            sum(f["source"] == s.name for f in failures),
            finished.get(s.name),
        )
        for s in config.sources
    }
    report = {
        "config": str(config_path or config.base_dir),
        "output": str(out.resolve()),
        "total_tokens": config.total_tokens,
        "sources": rows,
        "failures": failures,
        "redone": redone,
        "reused": reused,
    }
    if settings.tokenizer is not None and not failures:
        report["left_out_of_mixture"] = write_mixture_toml(
            out / "mixture.toml", rows, settings.tokenizer, settings.seed
        )
    write_reports(out, report)
    return BuildResult(out, report)


def _stage_files(
    executor: cf.Executor,
    sources: dict[str, Source],
    plans: dict[str, dict[str, Path]],
    out: Path,
    progress: bool,
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], list[dict[str, Any]], int]:
    """Stage 1 across every source's files at once (one pool keeps all workers busy).

    Returns the per-file records, the failures, what was redone (with why) and
    how many finished outputs were reused.
    """
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in plans}
    failures: list[dict[str, Any]] = []
    redone: list[dict[str, Any]] = []
    todo = []
    for name, keys in plans.items():
        folder, settings = out / name / FILTERED, source_settings(sources[name])
        for key, path in keys.items():
            recipe = file_recipe(sources[name], path, settings)
            record, why = file_status(folder, key, recipe)
            if record is not None:
                records[name].append(record)
            else:
                todo.append((name, key, path, recipe))
                redone.append({"source": name, "stage": "filtered", "file": key, "why": why})
    bar = tqdm(total=len(todo), desc="stage 1: input files", unit="file", disable=not progress)
    futures = {
        executor.submit(process_file, sources[name], path, out / name / FILTERED, key, recipe): (
            name,
            path,
        )
        for name, key, path, recipe in todo
    }
    for future in cf.as_completed(futures):
        name, path = futures[future]
        try:
            records[name].append(future.result())
        except Exception as error:  # a bug in a source: report it, keep everything else
            failures.append(_failure(name, str(path), error))
        bar.update()
    bar.close()
    reused = sum(len(keys) for keys in plans.values()) - len(todo)
    return records, failures, redone, reused


def _stage_sources(
    executor: cf.Executor,
    sources: dict[str, Source],
    plans: dict[str, dict[str, Path]],
    records: dict[str, list[dict[str, Any]]],
    failures: list[dict[str, Any]],
    config: DataBuildConfig,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """Stages 2-3, one task per source whose files all finished (sources run in parallel)."""
    settings = config.build
    failed = {f["source"] for f in failures}
    ready = [name for name in plans if name not in failed and plans[name]]
    futures = {
        executor.submit(
            finish_source,
            sources[name],
            settings.output / name,
            list(plans[name]),
            settings.shard_docs,
            settings.shard_bytes,
            settings.tokenizer,
            settings.shard_tokens,
            settings.seed,
            settings.shuffle_buffer,
        ): name
        for name in ready
    }
    finished: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(futures), desc="stages 2-3: sources", unit="source", disable=not progress)
    for future in cf.as_completed(futures):
        name = futures[future]
        try:
            finished[name] = future.result()
        except Exception as error:
            failures.append(_failure(name, "global filter / tokens", error))
        bar.update()
    bar.close()
    return finished
