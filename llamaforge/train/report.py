"""The training report: a loss curve like the paper's Figure 1 and a summary table.

It is built only from files a run leaves behind (``metrics.jsonl`` and the
summary the trainer writes), so it can be regenerated for any run, including
one that was interrupted and resumed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Curve:
    tokens: list[float]
    values: list[float]


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Rows of a metrics.jsonl; for a step logged twice (a resumed run), the last wins."""
    rows: dict[tuple[int, str], dict] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut by a kill mid-write
            if not isinstance(row, dict):
                continue
            rows[(int(row.get("step", -1)), row.get("split", "train"))] = row
    return [rows[key] for key in sorted(rows)]


def curve(rows: Sequence[dict], key: str, split: str = "train") -> Curve:
    points = [
        (float(r["tokens"]), float(r[key]))
        for r in rows
        if r.get("split", "train") == split and key in r and math.isfinite(float(r[key]))
    ]
    return Curve([p[0] for p in points], [p[1] for p in points])


def plot_loss(rows: Sequence[dict], out_png: str | os.PathLike, title: str) -> Path:
    train, val = curve(rows, "loss", "train"), curve(rows, "loss", "val")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train.tokens:
        ax.plot(train.tokens, train.values, label="training loss", linewidth=1.2)
    if val.tokens:
        ax.plot(val.tokens, val.values, "o-", label="validation loss", linewidth=1.5)
    ax.set_xlabel("training tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(f".{out_png.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png


# Metric plotted per task in the Figure 2 panel, in order of preference; tasks
# without any of these show their first logged metric.
MAIN_TASK_METRICS = ("acc", "exact_match", "maj1@1", "pass@1", "mc2", "mc1")


def task_curves(rows: Sequence[dict]) -> dict[str, tuple[str, Curve]]:
    """Task -> (metric, curve against tokens) from the rows a task-eval hook logged."""
    metrics_by_task: dict[str, list[str]] = {}
    for row in rows:
        if row.get("split") != "tasks":
            continue
        for key in row:
            task, sep, metric = key.partition("/")
            if sep and metric not in metrics_by_task.setdefault(task, []):
                metrics_by_task[task].append(metric)
    chosen: dict[str, tuple[str, Curve]] = {}
    for task, metrics in metrics_by_task.items():
        metric = next((m for m in MAIN_TASK_METRICS if m in metrics), metrics[0])
        chosen[task] = (metric, curve(rows, f"{task}/{metric}", "tasks"))
    return chosen


def plot_task_curves(rows: Sequence[dict], out_png: str | os.PathLike) -> Path | None:
    """One panel per task, its metric against training tokens (the paper's Figure 2)."""
    curves = task_curves(rows)
    if not curves:
        return None
    n = len(curves)
    cols = min(n, 4)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), dpi=110, squeeze=False)
    for ax, (task, (metric, points)) in zip(axes.flat, sorted(curves.items()), strict=False):
        ax.plot(points.tokens, [100 * v for v in points.values], "o-", linewidth=1.2)
        ax.set_title(f"{task} ({metric})", fontsize=9)
        ax.set_xlabel("training tokens", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(f".{out_png.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, out_png)
    return out_png


def _table(rows: Sequence[tuple[str, str]]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def write_report(
    run_dir: str | os.PathLike,
    summary: dict,
    samples: Sequence[tuple[str, str]] = (),
    title: str = "llamaforge training run",
    notes: Sequence[str] = (),
    samples_heading: str = "Samples (greedy, from the final model)",
) -> Path:
    """Write ``run_dir/report.md`` and ``run_dir/loss.png``; return the report path."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    plot_loss(rows, run_dir / "loss.png", title)

    def fmt(key: str, spec: str = ".4f", scale: float = 1.0) -> str:
        value = summary.get(key)
        return "n/a" if value is None else format(float(value) * scale, spec)

    table = _table(
        [
            ("parameters", f"{summary.get('params', 0):,}"),
            ("steps / tokens", f"{summary.get('steps', 0):,} / {summary.get('tokens', 0):,}"),
            ("final training loss", fmt("train_loss")),
            ("final training perplexity", fmt("train_ppl", ".2f")),
            ("final validation loss", fmt("val_loss")),
            ("final validation perplexity", fmt("val_ppl", ".2f")),
            ("initial validation loss", fmt("initial_val_loss")),
            ("throughput (tokens/s)", fmt("tokens_per_s", ",.0f")),
            ("model FLOPs utilisation", fmt("mfu", ".2%")),
            ("wall time (s)", fmt("wall_time_s", ".1f")),
            ("device", str(summary.get("device", "n/a"))),
            ("energy (Wh)", fmt("energy_wh", ".3f")),
            ("emissions (gCO2eq)", fmt("tco2eq", ".4f", 1e6)),
        ]
    )
    parts = [f"# {title}", "", "![loss against training tokens](loss.png)", "", table, ""]
    if plot_task_curves(rows, run_dir / "tasks.png"):
        last = {task: (metric, c.values[-1]) for task, (metric, c) in task_curves(rows).items()}
        parts += [
            "## Benchmarks during training (like the paper's Figure 2)",
            "",
            "![benchmark metrics against training tokens, in %](tasks.png)",
            "",
            _table([(f"{t} {m} (last)", f"{100 * v:.1f} %") for t, (m, v) in sorted(last.items())]),
            "",
        ]
    if notes:
        parts += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if samples:
        parts += [f"## {samples_heading}", ""]
        for prompt, completion in samples:
            parts += [f"**Prompt:** {prompt!r}", "", "```text", prompt + completion, "```", ""]
    report = run_dir / "report.md"
    tmp = report.with_name(".report.md.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, report)
    return report


# Power drawn per device when the config gives none: the paper's 400 W for an
# A100 (§2.5), and for a CPU a typical desktop/laptop package power under full
# load. Both are assumptions, printed in the report; set log.device_power_w.
GPU_POWER_W = 400.0
CPU_POWER_W = 65.0


def sample_completions(
    model,
    tokenizer_path: str | os.PathLike,
    prompts: Sequence[str],
    max_new_tokens: int = 48,
    sampling=None,
) -> list[tuple[str, str]]:
    """Completions of ``prompts`` (the report's samples): greedy unless ``sampling`` is given."""
    from llamaforge.inference.generate import generate
    from llamaforge.inference.sampling import SamplingConfig
    from llamaforge.tokenizer import Tokenizer

    tokenizer = Tokenizer(tokenizer_path)
    cfg = sampling or SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    was_training = model.training
    model.eval()
    completions = generate(model, tokenizer, list(prompts), cfg)
    model.train(was_training)
    return list(zip(prompts, completions, strict=True))


def describe_sampling(sampling) -> str:
    """The samples' heading: how they were decoded."""
    if sampling is None or sampling.greedy:
        return "Samples (greedy, from the final model)"
    stops = ", ".join(repr(s) for s in sampling.stop) or "none"
    return (
        f"Samples (temperature {sampling.temperature:g}, top-p {sampling.top_p:g}, "
        f"seed {sampling.seed}, at most {sampling.max_new_tokens} tokens, stop at {stops})"
    )


def write_run_report(
    cfg, result, model, prompts: Sequence[str] = (), title: str = "", sampling=None,
    extra_notes: Sequence[str] = (),
) -> Path:  # fmt: skip
    """Report of a finished run: summary figures, carbon estimate and samples.

    ``sampling`` (a :class:`~llamaforge.inference.sampling.SamplingConfig`)
    decodes the samples; None is greedy, 48 new tokens.
    """
    from llamaforge.train.carbon import estimate_carbon

    power = cfg.log.device_power_w or (GPU_POWER_W if "cuda" in result.device else CPU_POWER_W)
    device_hours = result.wall_time_s * result.n_devices / 3600.0
    carbon = estimate_carbon(device_hours, power)
    summary = {
        **result.to_dict(), "energy_wh": carbon.energy_wh, "tco2eq": carbon.tco2eq,
        "device_hours": device_hours, "power_w": power,
    }  # fmt: skip
    tokenizer = cfg.data.tokenizer
    samples = (
        sample_completions(model, tokenizer, prompts, sampling=sampling)
        if prompts and tokenizer
        else []
    )
    notes = [
        f"Energy = {device_hours:.5f} device-hours x {power:.0f} W x PUE 1.1; "
        "tCO2eq = MWh x 0.385 (paper §2.5).",
        f"MFU is against a peak of {result.peak_flops / 1e9:,.1f} GFLOP/s per device "
        "(log.peak_flops_per_device, or detected: data-sheet peak on GPUs, measured "
        "large-matmul throughput on CPUs).",
    ]
    data_report = Path(cfg.train.run_dir) / "finetune_data.json"
    if cfg.finetune.enabled and data_report.is_file():  # what was read, skipped, cut, kept
        counts = json.dumps(json.loads(data_report.read_text(encoding="utf-8")))
        notes.append(f"Finetuning data ({data_report.name}): {counts}")
    return write_report(
        cfg.train.run_dir,
        summary,
        samples,
        title or f"Training report: {cfg.train.run_dir}",
        [*notes, *extra_notes],
        describe_sampling(sampling),
    )
