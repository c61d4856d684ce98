"""The build's units of work: one input file, and one source's global filter + tokens.

Both are plain top-level functions of picklable arguments so the same code
runs in-process, in a ``ProcessPoolExecutor`` or on a Dask worker. Each one
leaves either finished output or nothing a re-run could mistake for it:

* **per file** -> ``OUT/<source>/filtered/<key>.jsonl.zst`` (one
  ``Document.to_json()`` per line) and ``<key>.report.json``. Both are
  written to new, exclusively created temp files (:mod:`llamaforge.data.
  outputs`: a symlink planted at a temp name is never followed) and renamed,
  the report last: a file with a report is finished; data without one is redone.
* **per source** -> ``OUT/<source>/final/`` (shards cut at ``shard_docs`` /
  ``shard_bytes``, then ``report.json``) is built in a new ``.final.tmp-XXXX/``
  and renamed when complete. Its report lists the per-file outputs it consumed;
  if that set changes (an input was added or redone) the final shards and
  tokens are rebuilt, so new input is never silently left out.

Both reports record the *recipe* that made them (settings, code versions,
inputs: :mod:`llamaforge.data.build_recipe`); a re-run whose recipe differs
redoes that output and says why, one whose recipe is the same reuses it.
Redoing replaces only files this pipeline wrote (``part-NNNNN.jsonl.zst``,
``report.json``, the token shards ``tokens/index.json`` lists): anything else a
user left in those folders stays. An intermediate file found damaged (a
filtered or final ``.jsonl.zst`` cut short or corrupt) is a :class:`DataError`
naming it; its report is removed first, so the next run redoes that file.
* **tokens** -> ``OUT/<source>/tokens/`` via :func:`tokenize_to_shards`, which
  is restartable on its own and records the final shards (size, mtime), seed,
  shuffle buffer and ``shard_tokens`` it was made from: a change redoes it.

Kept counts in the reports are what the pipeline wrote (whether or not a
source also calls ``report.keep``), so they always match the output files.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from llamaforge.data.build_files import ShardSink, close_synced, open_zst_writer, read_jsonl_zst
from llamaforge.data.build_recipe import digest, final_recipe, what_changed
from llamaforge.data.outputs import remove_temps
from llamaforge.data.shard_writer import remove_token_output
from llamaforge.data.shards import INDEX_NAME, TokenIndex, atomic_write_text
from llamaforge.data.sources.base import FilterReport, Source
from llamaforge.data.sources.textio import strip_compression_suffix
from llamaforge.data.tokenize_folder import describe_inputs, tokenize_to_shards
from llamaforge.umask import make_temp_dir

FILTERED, FINAL, TOKENS = "filtered", "final", "tokens"
REPORT_NAME = "report.json"
_FINAL_FILE = re.compile(r"^part-\d{5}\.jsonl\.zst$|^report\.json$")
_FINAL_TMP = re.compile(r"^\.final\.tmp(-[A-Za-z0-9_]{8})?$")


MAX_KEY_BYTES = 180


def input_keys(paths: list[tuple[Path, Path]]) -> dict[str, Path]:
    """Unique output names for ``(root, input)`` pairs: the path under its root, flattened.

    Two sites' ``Posts.xml`` must not collide, so folders become ``__``; a
    clash left after that (the same name under two roots) gets a path hash.
    A name longer than :data:`MAX_KEY_BYTES` (deep Books3-style paths) is cut
    and ends in a hash of the whole name: every file made from a key
    (``.KEY.jsonl.zst.XXXXXXXX.tmp`` the longest) must fit the file system's
    255-byte limit on one name.
    """
    import hashlib

    names: dict[str, list[Path]] = {}
    for root, path in paths:
        relative = path.relative_to(root) if path != root else Path(path.name)
        name = strip_compression_suffix("__".join(relative.parts))
        if len(name.encode()) > MAX_KEY_BYTES:
            digest = hashlib.sha1(name.encode()).hexdigest()[:12]
            cut = name.encode()[: MAX_KEY_BYTES - 13].decode(errors="ignore")
            name = f"{cut}-{digest}"
        names.setdefault(name, []).append(path)
    keys: dict[str, Path] = {}
    for name, group in names.items():
        for path in group:
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            keys[name if len(group) == 1 else f"{name}-{digest}"] = path
    return dict(sorted(keys.items()))


def load_file_report(out_dir: Path, key: str) -> dict[str, Any]:
    return json.loads((out_dir / f"{key}.report.json").read_text(encoding="utf-8"))


def file_status(out_dir: Path, key: str, recipe: dict[str, Any]) -> tuple[dict | None, str]:
    """``(finished record, "")`` if ``key``'s output was made by ``recipe``, else ``(None, why)``."""
    report = out_dir / f"{key}.report.json"
    if not report.is_file():
        return None, "not built yet"
    try:
        record = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return None, f"its report is unreadable ({error})"
    if not (out_dir / f"{key}.jsonl.zst").is_file():
        return None, "its filtered data is missing"
    why = what_changed(record.get("recipe"), recipe)
    return (record, "") if not why else (None, why)


def process_file(
    source: Source, path: Path, out_dir: Path, key: str, recipe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Stage 1 on one input file: ``source.process`` -> filtered JSONL.zst + report JSON.

    ``recipe`` (:func:`~llamaforge.data.build_recipe.file_recipe`) is stored
    in the report so a re-run can tell whether this output is still current.
    """
    start = time.process_time()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{key}.jsonl.zst"
    remove_temps(out_dir, data.name)  # a killed run's
    report, docs, nbytes = FilterReport(), 0, 0
    writer, tmp = open_zst_writer(data)
    try:
        with writer:
            for doc in source.process(path, report):
                doc.meta.setdefault("input", str(path))
                writer.write(json.dumps(doc.to_json(), ensure_ascii=False) + "\n")
                docs, nbytes = docs + 1, nbytes + len(doc.text.encode("utf-8", "replace"))
        close_synced(writer, tmp)
        os.replace(tmp, data)
    finally:
        tmp.unlink(missing_ok=True)
    report.kept_docs, report.kept_bytes = docs, nbytes
    record = {
        "input": str(path),
        "input_bytes": path.stat().st_size,
        "cpu_seconds": time.process_time() - start,
        "report": report.to_json(),
        "recipe": recipe,
        "recipe_sha256": digest(recipe) if recipe else "",
    }
    atomic_write_text(out_dir / f"{key}.report.json", json.dumps(record, indent=1) + "\n")
    return record


def _remove_ours(folder: Path, ours: re.Pattern[str]) -> None:
    """Delete the files of ``folder`` this pipeline writes; others (and the folder) stay."""
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_file() and ours.match(entry.name):
                entry.unlink()


def _install_final(tmp: Path, final: Path) -> None:
    """Replace ``final/``'s shards and report by ``tmp``'s, the report last."""
    _remove_ours(final, _FINAL_FILE)
    if final.is_dir() and not any(final.iterdir()):
        final.rmdir()
    if not final.exists():
        os.replace(tmp, final)
        return
    names = sorted(p.name for p in tmp.iterdir() if p.name != REPORT_NAME)
    for name in [*names, REPORT_NAME]:
        os.replace(tmp / name, final / name)
    tmp.rmdir()


def global_filter_source(
    source: Source, source_dir: Path, keys: list[str], shard_docs: int, shard_bytes: int
) -> dict[str, Any]:
    """Stage 2: ``source.global_filter`` over every filtered doc -> ``final/`` shards + report.

    The returned record's ``"redone"`` says why the shards were (re)built,
    or is "" when the finished ones were made by the same recipe and reused.
    """
    final, filtered = source_dir / FINAL, source_dir / FILTERED
    digests = {key: load_file_report(filtered, key).get("recipe_sha256", "") for key in keys}
    recipe = final_recipe(source, digests, shard_docs, shard_bytes)
    why = "not built yet"
    if (final / REPORT_NAME).is_file():
        record = json.loads((final / REPORT_NAME).read_text(encoding="utf-8"))
        why = what_changed(record.get("recipe"), recipe)
        if not why:
            return {**record, "redone": ""}
    for old in source_dir.iterdir():  # a killed run's hidden temporary folders
        if _FINAL_TMP.match(old.name) and old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
    tmp = make_temp_dir(source_dir, ".final.tmp-")
    try:
        return _build_final(source, source_dir, keys, tmp, recipe, why, shard_docs, shard_bytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when installed


def _build_final(
    source: Source,
    source_dir: Path,
    keys: list[str],
    tmp: Path,
    recipe: dict[str, Any],
    why: str,
    shard_docs: int,
    shard_bytes: int,
) -> dict[str, Any]:
    filtered, start = source_dir / FILTERED, time.process_time()
    docs = (
        d
        for key in keys
        for d in read_jsonl_zst(filtered / f"{key}.jsonl.zst", filtered / f"{key}.report.json")
    )
    report, sink, kept, kept_bytes = FilterReport(), ShardSink(tmp, shard_docs, shard_bytes), 0, 0
    for doc in source.global_filter(docs, report):
        kept, kept_bytes = kept + 1, kept_bytes + sink.add(doc)
    sink.close()
    report.kept_docs, report.kept_bytes = kept, kept_bytes
    record = {
        "inputs": keys,
        "shards": sink.shards,
        "cpu_seconds": time.process_time() - start,
        "report": report.to_json(),
        "recipe": recipe,
    }
    atomic_write_text(tmp / REPORT_NAME, json.dumps(record, indent=1) + "\n")
    remove_token_output(source_dir / TOKENS)  # made from the old final shards
    _install_final(tmp, source_dir / FINAL)
    return {**record, "redone": why}


def shuffled_documents(final: Path, seed: int, buffer: int) -> Iterator[str]:
    """Texts of ``final/`` in a seeded order: shards permuted, then a bounded shuffle buffer.

    The loader validates on each source's *tail*; shuffling here keeps that
    tail from being one input file, in bounded memory (``buffer`` documents).
    """
    record = json.loads((final / REPORT_NAME).read_text(encoding="utf-8"))
    files = [final / s["file"] for s in record["shards"]]
    rng = random.Random(seed)
    rng.shuffle(files)
    texts: Iterable[str] = (d.text for f in files for d in read_jsonl_zst(f, final / REPORT_NAME))
    if buffer <= 1:
        yield from texts
        return
    pool: list[str] = []
    for text in texts:
        if len(pool) < buffer:
            pool.append(text)
            continue
        i = rng.randrange(buffer)
        yield pool[i]
        pool[i] = text
    rng.shuffle(pool)
    yield from pool


def tokenize_source(
    source_dir: Path, tokenizer_path: Path, shard_tokens: int, seed: int, buffer: int
) -> dict[str, Any]:
    """Stage 3: ``final/`` -> ``tokens/`` (skipped when already finished with this tokenizer)."""
    from llamaforge.data.cli import load_tokenizer

    final, tokens = source_dir / FINAL, source_dir / TOKENS
    start = time.process_time()
    tokenizer = load_tokenizer(tokenizer_path)
    record = json.loads((final / REPORT_NAME).read_text(encoding="utf-8"))
    inputs = describe_inputs([final / s["file"] for s in record["shards"]])
    index: TokenIndex = tokenize_to_shards(
        shuffled_documents(final, seed, buffer),
        tokenizer,
        tokens,
        shard_tokens=shard_tokens,
        progress=False,
        made_from={"inputs": inputs, "seed": seed, "shuffle_buffer": buffer},
    )
    assert (tokens / INDEX_NAME).is_file()
    return {
        "path": str(tokens.resolve()),
        "tokens": index.n_tokens,
        "docs": index.n_docs,
        "cpu_seconds": time.process_time() - start,
    }


def finish_source(
    source: Source,
    source_dir: Path,
    keys: list[str],
    shard_docs: int,
    shard_bytes: int,
    tokenizer_path: Path | None,
    shard_tokens: int,
    seed: int,
    buffer: int,
) -> dict[str, Any]:
    """Stages 2 and 3 for one source, as one task (they run back to back on one worker)."""
    final = global_filter_source(source, source_dir, keys, shard_docs, shard_bytes)
    result: dict[str, Any] = {"final": final}
    if tokenizer_path is not None and result["final"]["report"]["kept_docs"] > 0:
        result["tokens"] = tokenize_source(source_dir, tokenizer_path, shard_tokens, seed, buffer)
    return result
