"""``llamaforge demo`` end to end on a shrunken config, then once more to check it reuses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from llamaforge.cli import main
from llamaforge.demo import PROMPTS
from llamaforge.train.report import read_metrics

# Small enough for about 10 s on 2 busy cores; the recipe (optimizer, schedule,
# data pipeline, report) is the demo's own.
SHRINK = [
    "train.max_steps=6", "train.val_every_steps=3", "checkpoint.every_steps=3",
    "model.n_layers=1", "model.vocab_size=512", "data.seq_len=128", "data.micro_batch_size=8",
    "data.batch_tokens=2048", "train.val_batches=2", "optim.warmup_steps=2",
    "log.tensorboard=false",
]  # fmt: skip
# The second act at a test's size; its lr and steps are the demo's recipe made
# strong enough that 120 pairs' held-out response loss falls by far more than noise.
FINETUNE = [
    "--pairs", "120", "--finetune-set", "train.max_steps=8", "--finetune-set",
    "data.batch_tokens=2048", "--finetune-set", "data.micro_batch_size=8",
    "--finetune-set", "train.val_every_steps=4", "--finetune-set", "checkpoint.every_steps=4",
    "--finetune-set", "optim.lr=3e-3",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine more make a tiny model far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def table_value(report: str, metric: str) -> float:
    match = re.search(rf"^\| {re.escape(metric)} \| ([\d.,]+) \|$", report, re.MULTILINE)
    assert match, f"no '{metric}' row in report.md"
    return float(match[1].replace(",", ""))


def trainer_weight(run_dir: Path, name: str) -> torch.Tensor:
    """A weight of the newest pretraining checkpoint, read straight from its safetensors."""
    from safetensors.torch import load_file

    newest = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return load_file(newest / "model.safetensors")[name]


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes | None]]:
    """mtime and (for small files) contents of what a second run must not redo."""
    files = [run_dir / "tokenizer.model", run_dir / "metrics.jsonl", run_dir / "instructions.jsonl"]
    files += [run_dir / "finetune" / "metrics.jsonl", *sorted((run_dir / "eval").iterdir())]
    files += sorted((run_dir / "tokens").iterdir()) + sorted((run_dir / "checkpoints").rglob("*"))
    files += sorted((run_dir / "finetune" / "checkpoints").rglob("*"))
    return {
        str(f.relative_to(run_dir)): (f.stat().st_mtime_ns, f.read_bytes() if f.suffix else None)
        for f in files
        if f.is_file()
    }


def test_demo_trains_reports_and_then_reuses_everything(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "demo"
    args = ["demo", "--run-dir", str(run_dir), "--corpus-mb", "0.5", *FINETUNE, *SHRINK]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "training BPE" in out and "5/7 report" in out and "7/7 evaluation" in out

    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| metric | value |" in report and "![loss against training tokens](loss.png)" in report
    assert f"| steps / tokens | 6 / {6 * 2048:,} |" in report
    initial = table_value(report, "initial validation loss")
    final = table_value(report, "final validation loss")
    assert final < initial - 0.1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val_loss"] < summary["initial_val_loss"]
    assert (run_dir / "loss.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "## Samples (temperature 0.8, top-p 0.9, seed 0" in report
    for prompt in PROMPTS:
        assert f"**Prompt:** {prompt!r}" in report
    assert re.search(r"- Validation: \d+ of \d+ documents, drawn at random", report)

    # Second act: response-only loss on the held-out pairs, before and after.
    loss_before = table_value(report, "held-out response loss before finetuning")
    loss_after = table_value(report, "held-out response loss after finetuning")
    assert loss_after < loss_before - 0.3
    ft_summary = json.loads((run_dir / "finetune" / "summary.json").read_text())
    assert ft_summary["initial_val_loss"] == pytest.approx(loss_before, abs=1e-4)
    assert ft_summary["val_loss"] == pytest.approx(loss_after, abs=1e-4)
    pairs = [json.loads(line) for line in (run_dir / "instructions.jsonl").open()]
    assert len(pairs) == 120 and all(set(p) == {"instruction", "input", "output"} for p in pairs)
    assert report.count("**Instruction:**") >= 2
    assert report.count("Pretrained model:") == report.count("Finetuned model:") >= 2

    # Third act: the eval table over the smoke set, both models, numbers in every cell.
    section = report.split("## Evaluation: smoke set, not a benchmark", 1)[1]
    for title in ("BoolQ", "PIQA", "HellaSwag", "ARC-e", "TriviaQA"):
        assert title in section
    rows = re.findall(r"^\| (pretrained|finetuned) \|((?: [\d.]+ \|)+)$", section, re.MULTILINE)
    assert sorted({r[0] for r in rows}) == ["finetuned", "pretrained"] and len(rows) == 4
    assert (run_dir / "eval-data" / "piqa" / "validation.jsonl").is_file()
    # What the README's next commands read: the model as a plain folder, the corpus.
    from llamaforge.formats import load_any

    final, _ = load_any(run_dir / "final")
    assert torch.equal(
        final.tok_embeddings.weight, trainer_weight(run_dir, "tok_embeddings.weight")
    )
    assert (run_dir / "final" / "tokenizer.model").is_file()
    corpus = (run_dir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(corpus) > 10 and all(set(json.loads(line)) == {"text"} for line in corpus)

    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert "- Validation:" in report
    assert [r["step"] for r in rows if r["split"] == "val"] == [0, 3, 6]

    before = snapshot(run_dir)
    assert "checkpoints/step_00000006/model.safetensors" in before
    (run_dir / "report.md").unlink()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "tokenizer: reusing" in out and "training BPE" not in out
    assert "instructions: reusing" in out
    assert snapshot(run_dir) == before  # same tokens, no new step, metric row or checkpoint
    again = (run_dir / "report.md").read_text(encoding="utf-8")  # the report is written again
    assert table_value(again, "held-out response loss after finetuning") == loss_after
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["stopped_by"]) == (6, "finished")
