"""The build's last stage: the trainer's mixture table and the per-stage report.

The mixture is *realised* by the trainer: :class:`~llamaforge.data.loader.
TokenLoader` draws each sequence's source with the normalised weights, and a
source that runs out starts another epoch. So the build only has to write
the token folders and their Table 1 weights (``mixture.toml``, the trainer's
``[data]`` section), and tell the user what that mixture means for the
planned run: a source with ``tokens`` tokens and normalised weight ``w``
gets ``w * total_tokens / tokens`` epochs, set beside Table 1's column so a
too-small dump (an epoch count far above the paper's) is visible before
training starts.

Paths in ``mixture.toml`` are absolute: the trainer resolves paths against
its working folder, which need not be the build's.

``mixture.toml``'s first line and ``report.md``'s title are how a later run
recognises these files as the build's own (:func:`llamaforge.data.outputs.
check_build_outputs`): a user's file at those names is refused, never replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llamaforge.data.outputs import MIXTURE_HEADER, REPORT_MD_TITLE
from llamaforge.data.shards import atomic_write_text

MB = 1e6


def source_summary(
    weight: float,
    share: float,
    epochs_table1: float,
    total_tokens: float,
    file_records: list[dict[str, Any]],
    n_files: int,
    n_failed: int,
    finished: dict[str, Any] | None,
) -> dict[str, Any]:
    """One source's row of ``report.json`` from its per-file and per-source records."""
    from llamaforge.data.sources.base import FilterReport

    process = FilterReport()
    for record in file_records:
        process.merge(FilterReport.from_json(record["report"]))
    tokens = (finished or {}).get("tokens")
    n_tokens = tokens["tokens"] if tokens else None
    return {
        "weight": weight,
        "share": share,
        "epochs_table1": epochs_table1 or None,
        "files": {"total": n_files, "done": len(file_records), "failed": n_failed},
        "input_bytes": sum(r["input_bytes"] for r in file_records),
        "cpu_seconds": sum(r["cpu_seconds"] for r in file_records),
        "process": process.to_json(),
        "global_filter": finished["final"]["report"] if finished else None,
        "final_shards": len(finished["final"]["shards"]) if finished else 0,
        "tokens": n_tokens,
        "token_folder": tokens["path"] if tokens else None,
        "epochs_planned": share * total_tokens / n_tokens if n_tokens else None,
    }


def write_mixture_toml(
    path: Path, sources: dict[str, dict[str, Any]], tokenizer: Path | None, seed: int
) -> list[str]:
    """The trainer's ``[data]`` tokenizer and source list; returns sources left out (no tokens)."""
    lines = [
        f"{MIXTURE_HEADER}: the Table 1 mixture over the built token folders.",
        '# Use it from a training config: [data] mixture = "<this file>"; weights are normalised.',
        "[data]",
        f"seed = {seed}",
    ]
    if tokenizer is not None:
        lines.append(f"tokenizer = {json.dumps(str(tokenizer.resolve()))}")
    missing = []
    for name, row in sources.items():
        if not row["token_folder"]:
            missing.append(name)
            continue
        lines += ["", f"[[data.sources]]  # {name}: {row['tokens']:,} tokens"]
        lines += [f"path = {json.dumps(row['token_folder'])}", f"weight = {row['weight']!r}"]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return missing


def _reasons(report: dict[str, Any] | None) -> str:
    if not report or not report["dropped_docs"]:
        return "-"
    return ", ".join(
        f"{reason} {n:,} ({report['dropped_bytes'].get(reason, 0) / MB:.2f} MB)"
        for reason, n in report["dropped_docs"].items()
    )


def _bad(report: dict[str, Any]) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in report["bad_input"].items()) or "-"


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the same numbers as ``report.json``, as tables a person reads."""
    sources = report["sources"]
    out = [
        REPORT_MD_TITLE,
        "",
        f"Config: `{report['config']}`; planned total tokens: {report['total_tokens']:.4g}.",
        "",
        "## Stage 1: per-file filters (`Source.process`)",
        "",
        "| source | files done/total (failed) | input MB | kept docs | kept MB | dropped (docs, MB) "
        "| bad input |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for name, row in sources.items():
        files, proc = row["files"], row["process"]
        out.append(
            f"| {name} | {files['done']}/{files['total']} ({files['failed']}) "
            f"| {row['input_bytes'] / MB:.2f} | {proc['kept_docs']:,} | {proc['kept_bytes'] / MB:.2f} "
            f"| {_reasons(proc)} | {_bad(proc)} |"
        )
    out += [
        "",
        "## Stage 2: source-wide filters (`Source.global_filter`)",
        "",
        "| source | kept docs | kept MB | dropped (docs, MB) | final shards |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for name, row in sources.items():
        glob = row["global_filter"]
        if glob is None:
            out.append(f"| {name} | - | - | not run | 0 |")
            continue
        out.append(
            f"| {name} | {glob['kept_docs']:,} | {glob['kept_bytes'] / MB:.2f} "
            f"| {_reasons(glob)} | {row['final_shards']} |"
        )
    out += [
        "",
        "## Stages 3-4: tokens and the mixture",
        "",
        "Planned epochs = share x planned total tokens / tokens, beside Table 1's epochs.",
        "",
        "| source | weight | share | tokens | planned epochs | Table 1 epochs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in sources.items():
        out.append(
            f"| {name} | {row['weight']:g} | {row['share']:.2%} | {_number(row['tokens'], ',')} "
            f"| {_number(row['epochs_planned'], '.3g')} | {_number(row['epochs_table1'], 'g')} |"
        )
    redone = report.get("redone") or []
    out += ["", f"## Redone this run: {len(redone)} (reused: {report.get('reused', 0)})", ""]
    for item in redone:
        what = f"{item['source']} {item['stage']}" + (f" {item['file']}" if "file" in item else "")
        out.append(f"- {what}: {item['why']}")
    if report["failures"]:
        out += ["", "## Failures (bugs, not bad data: fix and run again)", ""]
        out += [f"- {f['source']} {f['where']}: {f['error']}" for f in report["failures"]]
    return "\n".join(out) + "\n"


def write_reports(out: Path, report: dict[str, Any]) -> None:
    atomic_write_text(out / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "report.md", render_markdown(report))
