"""The demo's second and third acts: instruction finetuning, then a smoke evaluation.

**Second act.** The pretrained demo model is finetuned through
``llamaforge.train`` (the ``[finetune]`` path: the same loop, checkpoints and
resume as pretraining) on Alpaca-schema pairs built by
:mod:`llamaforge.finetune.stdlib_instructions` from standard-library files
that are *not* in the pretraining corpus. Both directions are used, one per
function: "write a function from its summary" (the response is code, which
the model already half knows, so the act shows it learning to follow the
signature and summary) and "explain this function" (the response is the
docstring's first line, which the base model never produces after
``### Response:``, so the gain is large and shows at once). The held-out
pairs are the trainer's own validation split (``finetune.val_fraction``, a
seeded random sample), scored with response-only loss; the report gives that
loss for the base model (step 0 of the finetuning run) and after finetuning,
and samples both models on a few held-out instructions.

**Third act.** :func:`llamaforge.eval.smoke_data.write_smoke_set` writes a few
items per task in the real datasets' schemas to ``runs/demo/eval-data``, and
:func:`llamaforge.eval.runner.evaluate_tasks` (what ``llamaforge eval`` runs)
scores both models on it. It is a smoke set, not a benchmark: a handful of
easy items per task, so the numbers show that the pipeline runs, not skill.
Results are kept in ``runs/demo/eval/*.json`` and reused when the checkpoint
is the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

FINETUNE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-finetune.toml"
N_SAMPLES = 4


def _held_out(data: Path, fraction: float, seed: int) -> list[list[dict]]:
    from llamaforge.finetune.data import read_conversations
    from llamaforge.finetune.examples import split_indices

    conversations, _ = read_conversations(str(data), "alpaca")
    _, val_ids = split_indices(len(conversations), fraction, seed)
    held = [conversations[i] for i in val_ids]
    write = [c for c in held if not c[0].get("input")]
    explain = [c for c in held if c[0].get("input")]
    half = N_SAMPLES // 2
    return write[:half] + explain[: N_SAMPLES - min(half, len(write))]


def _prompt_text(template, conversation: list[dict]) -> str:
    segments = template.render(conversation[:-1], add_generation_prompt=True)
    return "".join(s.text for s in segments)


def _samples(models, tokenizer_path: Path, template, held: list[list[dict]]) -> list[str]:
    from llamaforge.demo import sampling_config
    from llamaforge.train.report import sample_completions

    prompts = [_prompt_text(template, c) for c in held]
    answers = {}
    for label, model in models:
        cfg = sampling_config(max_new_tokens=96)
        answers[label] = [
            a for _, a in sample_completions(model, tokenizer_path, prompts, sampling=cfg)
        ]
    lines = []
    for i, conversation in enumerate(held):
        user, reference = conversation[0], conversation[-1]["content"]
        lines += [f"**Instruction:** {user['content']}", ""]
        if user.get("input"):
            lines += ["```python", user["input"], "```", ""]
        lines += ["Reference:", "", "```text", reference, "```", ""]
        for label, _ in models:
            lines += [f"{label}:", "", "```text", answers[label][i].strip() or "(empty)", "```", ""]
    return lines


def finetune_act(args, run_dir: Path, base: Path, tokenizer_path: Path, used: set[str],
                 base_model, say: Callable[[str], None]) -> dict[str, Any] | None:  # fmt: skip
    """Build the pairs (once), finetune (resumes), and return the report section and losses."""
    from llamaforge.data.local_corpus import stdlib_files
    from llamaforge.demo import sampling_config
    from llamaforge.finetune.examples import split_indices
    from llamaforge.finetune.stdlib_instructions import build_pairs, write_jsonl
    from llamaforge.finetune.templates import load_template
    from llamaforge.train.config import load_train_config
    from llamaforge.train.report import describe_sampling
    from llamaforge.train.trainer import Trainer

    data = run_dir / "instructions.jsonl"
    if data.is_file():
        say(f"6/7 instructions: reusing {data}")
    else:
        files = [p for p in stdlib_files() if str(p) not in used]
        records = build_pairs(files, max_pairs=args.pairs, seed=0)
        write_jsonl(records, data)
        say(f"6/7 instructions: {len(records)} pairs from {len(files)} stdlib files -> {data}")
    cfg = load_train_config(FINETUNE_CONFIG, [
        f"finetune.init={str(base)!r}", f"finetune.data={str(data)!r}",
        f"data.tokenizer={str(tokenizer_path)!r}", f"train.run_dir={str(run_dir / 'finetune')!r}",
        *args.finetune_set,
    ])  # fmt: skip
    say(f"    finetuning for {cfg.max_steps} steps of {cfg.data.batch_tokens:,} positions "
        "(response-only loss; resumes if interrupted)")  # fmt: skip
    trainer = Trainer(cfg)
    result = trainer.run()
    if result.stopped_by != "finished":
        say(f"stopped by {result.stopped_by} at step {result.steps}; run `make demo` to resume")
        return None
    before, after = result.initial_val_loss, result.val_loss
    if before is None or after is None:
        from llamaforge.errors import DataError

        raise DataError(f"{data}: no held-out pairs to score; raise --pairs")
    n_pairs = sum(1 for _ in data.open(encoding="utf-8"))
    n_held = len(split_indices(n_pairs, cfg.finetune.val_fraction, cfg.data.seed)[1])
    held = _held_out(data, cfg.finetune.val_fraction, cfg.data.seed)
    template = load_template(cfg.finetune.template)
    models = [("Pretrained model", base_model), ("Finetuned model", trainer.model)]
    section = [
        "## Second act: instruction finetuning",
        "",
        f"{n_pairs} instruction/response pairs (Alpaca schema, `{data.name}`) built with `ast` "
        "from standard-library files that are not in the pretraining corpus: "
        '"Write a Python function `name(args)`: <docstring\'s first line>" -> the source '
        'without its docstring, or "Explain what this Python function does." with that '
        f"source as input -> the docstring's first line. {n_held} pairs (a seeded random "
        f"{cfg.finetune.val_fraction:.0%}) are held out. Finetuned from `{base}` with the "
        f"`{cfg.finetune.template}` template for {result.steps} steps "
        f"({result.tokens:,} positions, {result.wall_time_s:.0f} s).",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| held-out response loss before finetuning | {before:.4f} |",
        f"| held-out response loss after finetuning | {after:.4f} |",
        "",
        f"### Held-out instructions, both models: {describe_sampling(sampling_config(96))}",
        "",
        *_samples(models, tokenizer_path, template, held),
    ]
    checkpoint = Path(result.checkpoint)
    return {"section": section, "before": before, "after": after,
            "models": [("finetuned", trainer.model, checkpoint)]}  # fmt: skip


def eval_act(run_dir: Path, tokenizer_path: Path, base_model, base: Path, finetuned: dict,
             say: Callable[[str], None]) -> list[str]:  # fmt: skip
    """Score both models on the smoke set; return the report section."""
    from llamaforge.eval.report import markdown_report, read_results
    from llamaforge.eval.runner import evaluate_tasks, write_results
    from llamaforge.eval.smoke_data import SMOKE_TASKS, write_smoke_set
    from llamaforge.tokenizer import Tokenizer

    data_dir = run_dir / "eval-data"
    counts = write_smoke_set(data_dir)
    say(f"7/7 evaluation: {', '.join(SMOKE_TASKS)} on the smoke set in {data_dir}")
    tokenizer = Tokenizer(tokenizer_path)
    runs = []
    for label, model, checkpoint in [("pretrained", base_model, base), *finetuned["models"]]:
        out = run_dir / "eval" / f"{label}.json"
        if out.is_file() and read_results(out)["config"].get("checkpoint") == str(checkpoint):
            runs.append(read_results(out))
            continue
        was_training = model.training
        model.eval()
        results = evaluate_tasks(
            model, tokenizer, SMOKE_TASKS, data_dir=data_dir, batch_size=8,
            progress=True, checkpoint=checkpoint,
        )  # fmt: skip
        model.train(was_training)
        write_results(results, out)
        runs.append(results)
    table = markdown_report(runs, labels=["pretrained", "finetuned"][: len(runs)])
    table = "\n".join("#" + line if line.startswith("## ") else line for line in table.splitlines())
    return [
        "## Evaluation: smoke set, not a benchmark",
        "",
        f"`llamaforge eval` (in-process) on {sum(counts.values())} hand-written items "
        f"({', '.join(f'{t} {n}' for t, n in counts.items())}) that the demo writes to "
        f"`{data_dir}` in each dataset's own schema; 0-shot. A handful of easy items: the "
        "numbers show that the evaluation pipeline runs end to end, not how good a model is. "
        f"Same data: `llamaforge eval CHECKPOINT --tasks {','.join(SMOKE_TASKS)} "
        f"--data-dir {data_dir}`.",
        "",
        table.strip(),
        "",
    ]


def write_sections(report: Path, sections: list[list[str]]) -> None:
    """Append ``sections`` to ``report`` atomically."""
    text = report.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
    text += "\n".join(line for section in sections for line in [*section, ""])
    tmp = report.with_name(f".{report.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, report)
