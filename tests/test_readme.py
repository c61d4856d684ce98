"""Every shell command in README.md and docs/*.md runs as written (with small limits).

The documents' ```bash / ```sh blocks are read, each command becomes one test,
and it runs in a scratch folder that holds what ``make demo`` leaves behind
(``runs/demo/...``, built once per session with the demo's own library calls
and a tiny workload) plus a copy of ``configs/``. Only the size of the work is
changed, by appending overrides (``train.max_steps=2``, ``--limit 2``, ...), so
a wrong path, flag, config field or missing file fails here. A command that
cannot run on a CPU-only, offline machine is listed in ``NOT_RUN`` with the
reason; a new command that is neither runnable nor listed fails the test.
Commands of one file run in order, each after the earlier ones of its file
(``train-tokenizer`` before ``tokenize`` before ``train``), also under ``-k``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_FENCES = ("bash", "sh", "shell", "console")
TIMEOUT_S = 300  # per command; a busy 2-core machine is slow, a hang still ends

# Command prefix (words joined by one space) -> why it is not run here.
NOT_RUN = {
    "make demo": "the demo itself (minutes); the fixture builds its outputs with a tiny workload",
    "make test": "the whole test suite, this file included",
    "make lint": "ruff over the tree, run by CI on its own",
    "tensorboard": "a server that runs until stopped",
    "python benchmarks/": "benchmarks run for minutes; README figures come from them",
    "torchrun --standalone --nproc_per_node 8": "needs 8 GPUs (7B)",
    "torchrun --nnodes": "multi-node launch",
    "#!/bin/bash": "a Slurm batch script for a multi-node GPU cluster",
    "llamaforge convert runs/llama/": "a 7B cluster run's checkpoint",
    "llamaforge generate runs/llama/": "a 7B cluster run's checkpoint",
    "llamaforge eval CKPT": "placeholder checkpoint, real benchmarks (Hugging Face or a full set)",
    "llamaforge eval BASE": "placeholder checkpoint, real MMLU",
    "llamaforge eval FINETUNED": "placeholder checkpoint, real MMLU",
    "llamaforge eval runs/ft/": "a finetuning run's checkpoint, real MMLU",
    "llamaforge convert runs/ft/": "a finetuning run's checkpoint",
    "llamaforge chat": "interactive (reads turns from the terminal)",
    "llamaforge finetune configs/finetune/tiny-cpu.toml finetune.data=my-instructions.jsonl": (
        "needs the reader's own instruction file"
    ),
}

# Appended to a command so it does little work; later arguments win in our CLIs.
TRAIN_SMALL = [
    "train.max_steps=2", "optim.warmup_steps=1", "data.micro_batch_size=1",
    "data.batch_tokens=512", "train.val_batches=1", "log.tensorboard=false",
]  # fmt: skip
SMALL = {
    "train": TRAIN_SMALL,
    "eval": ["--limit", "2"],
    "eval-loss": ["--max-batches", "2"],
    "generate": ["--max-new-tokens", "4"],
}
LM_EVAL_SMALL = ["--limit", "2"]


def shell_commands(path: Path) -> list[tuple[int, str]]:
    """(line, command) for each command in the file's shell blocks; a ``#!`` block is one."""
    found: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w+)\s*$", lines[i])
        i += 1
        if not fence:
            continue
        start, body = i, []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if fence[1] not in SHELL_FENCES:
            continue
        if body and body[0].startswith("#!"):
            found.append((start + 1, body[0]))
            continue
        pending, first = "", 0
        for n, line in enumerate(body, start + 1):
            if not pending:
                first = n
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command, pending = pending + line, ""
            if shlex.split(command, comments=True):
                found.append((first, command.strip()))
    return found


def normalised(command: str) -> str:
    return " ".join(shlex.split(command, comments=True))


def skip_reason(command: str) -> str | None:
    text = command if command.startswith("#!") else normalised(command)
    return next((why for prefix, why in NOT_RUN.items() if text.startswith(prefix)), None)


COMMANDS = [
    (doc, line, command) for doc in DOCUMENTS for line, command in shell_commands(doc)
]  # fmt: skip


def argv_for(command: str) -> list[str]:
    """The command as run here: our Python, small limits appended."""
    words = shlex.split(command, comments=True)
    program, rest = words[0], words[1:]
    if program == "llamaforge":
        sub = rest[0] if rest else ""
        return [sys.executable, "-m", "llamaforge", *rest, *SMALL.get(sub, [])]
    if program == "torchrun":
        sub = rest[rest.index("llamaforge") + 1] if "llamaforge" in rest else ""
        return [sys.executable, "-m", "torch.distributed.run", *rest, *SMALL.get(sub, [])]
    if program == "python" and rest[:2] == ["-m", "llamaforge.eval.lm_eval_backend"]:
        return [sys.executable, *rest, *LM_EVAL_SMALL]
    if program == "cat":
        return words
    raise AssertionError(
        f"{command!r}: no rule to run this command; teach tests/test_readme.py to run it "
        "with small limits, or add its prefix to NOT_RUN with the reason"
    )


def _write_eval_smoke_set(out: Path) -> None:
    """The demo's offline evaluation set when ``llamaforge.eval.smoke_data`` exists, else
    the same layout (``DIR/<task>/<split>.jsonl``) from the task tests' real-schema records."""
    try:
        from llamaforge.eval.smoke_data import write_smoke_set
    except ImportError:
        from tests.eval.tasks.test_commonsense import ARC_LETTERS, BOOLQ, HELLASWAG, PIQA

        for task, split, doc in [("boolq", "validation", BOOLQ), ("piqa", "validation", PIQA),
                                 ("hellaswag", "validation", HELLASWAG),
                                 ("arc_easy", "test", ARC_LETTERS)]:  # fmt: skip
            (out / task).mkdir(parents=True, exist_ok=True)
            rows = [json.dumps(doc) + "\n"] * 3
            (out / task / f"{split}.jsonl").write_text("".join(rows), encoding="utf-8")
    else:
        write_smoke_set(out)


@pytest.fixture(scope="session")
def after_demo(tmp_path_factory) -> Path:
    """A folder as ``make demo`` leaves it, built with the demo's calls on ~0.4 MB of text.

    Paths are the demo's: runs/demo/{corpus.jsonl, tokenizer.model, tokens/,
    checkpoints/, final/ (the last checkpoint as a native model folder),
    eval-data/ (the offline smoke set)}.
    """
    from llamaforge.data.local_corpus import iter_local_documents
    from llamaforge.data.tokenize_folder import tokenize_to_shards
    from llamaforge.formats import convert
    from llamaforge.tokenizer import train_tokenizer
    from llamaforge.train.checkpoint_files import latest_valid
    from llamaforge.train.config import load_train_config
    from llamaforge.train.trainer import Trainer

    home = tmp_path_factory.mktemp("after-demo")
    shutil.copytree(ROOT / "configs", home / "configs")
    demo = home / "runs" / "demo"
    demo.mkdir(parents=True)
    documents = [d.text for d in iter_local_documents(max_bytes=400_000)]
    with (demo / "corpus.jsonl").open("w", encoding="utf-8") as out:
        out.writelines(json.dumps({"text": text}) + "\n" for text in documents)
    cfg = load_train_config(ROOT / "configs" / "demo.toml", [
        f"data.tokenizer={str(demo / 'tokenizer.model')!r}",
        f"data.sources=[{{path = {str(demo / 'tokens')!r}, weight = 1.0}}]",
        f"train.run_dir={str(demo)!r}", "train.device=cpu", *TRAIN_SMALL,
    ])  # fmt: skip
    vocab = cfg.model_config.vocab_size  # the demo's, which the tiny configs must match
    tokenizer = train_tokenizer(demo / "tokenizer.model", texts=documents, vocab_size=vocab)
    tokenize_to_shards(documents, tokenizer, demo / "tokens")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 for the commands (see run_in)
    try:
        assert Trainer(cfg).run().stopped_by == "finished"
    finally:
        torch.set_num_threads(threads)
    convert(latest_valid(demo / "checkpoints"), demo / "final", dst_format="native")
    _write_eval_smoke_set(demo / "eval-data")
    return home


_done: dict[str, subprocess.CompletedProcess] = {}


def run_in(home: Path, command: str) -> subprocess.CompletedProcess:
    """Run once per session: a command documented twice (README and docs) runs once."""
    key = normalised(command)
    if key not in _done:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "HF_HOME": str(home / ".hf"), "TOKENIZERS_PARALLELISM": "false",
               # one intra-op thread: on a busy 2-core machine more make tiny models 3x slower
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        _done[key] = subprocess.run(
            argv_for(command), cwd=home, env=env, capture_output=True, text=True,
            timeout=TIMEOUT_S, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return _done[key]


@pytest.mark.parametrize(
    ("doc", "line", "command"), COMMANDS,
    ids=[f"{d.relative_to(ROOT)}:{n}" for d, n, _ in COMMANDS],
)  # fmt: skip
def test_documented_command_runs_as_written(after_demo, doc, line, command):
    why = skip_reason(command)
    if why:
        pytest.skip(f"not run here: {why}")
    for earlier_doc, earlier_line, earlier in COMMANDS:  # what this command builds on
        if earlier_doc == doc and earlier_line < line and not skip_reason(earlier):
            result = run_in(after_demo, earlier)
            assert result.returncode == 0, f"{doc.name}:{earlier_line} (needed first) failed"
    result = run_in(after_demo, command)
    assert result.returncode == 0, (
        f"{doc.relative_to(ROOT)}:{line}: `{command}` exited {result.returncode}\n"
        f"{(result.stdout + result.stderr)[-3000:]}"
    )


def test_every_document_with_commands_is_found():
    """The extractor sees the blocks (a renamed fence or file would silently test nothing)."""
    files = {doc.name for doc, _, _ in COMMANDS}
    assert {"README.md", "data.md", "distributed.md", "evaluation.md", "finetune.md"} <= files
    assert any(
        normalised(c).startswith("llamaforge train configs/tiny-1m.toml") for *_, c in COMMANDS
    )


def test_an_unlisted_command_fails_and_every_listed_prefix_is_used():
    """A new command needs a rule or a reason; a stale NOT_RUN entry would hide nothing."""
    assert skip_reason("llamaforge quantize runs/demo/final") is None
    with pytest.raises(AssertionError, match="NOT_RUN"):
        argv_for("rm -rf runs/demo")
    assert argv_for("llamaforge train configs/tiny-1m.toml")[-len(TRAIN_SMALL) :] == TRAIN_SMALL
    texts = [c if c.startswith("#!") else normalised(c) for *_, c in COMMANDS]
    unused = [prefix for prefix in NOT_RUN if not any(t.startswith(prefix) for t in texts)]
    assert not unused, f"NOT_RUN entries that match no documented command: {unused}"
