"""``llamaforge demo``: the whole system on a laptop CPU, offline, in a few minutes.

Steps, each reused when its output already exists (so a second run resumes
or reuses instead of starting over):

1. gather a few MB of real text already on the machine (``data.local_corpus``);
2. train a SentencePiece BPE tokenizer on it (``runs/demo/tokenizer.model``);
3. tokenize it into memory-mapped shards (``runs/demo/tokens``);
4. pretrain a tiny LLaMA with the paper's recipe (``configs/demo.toml``),
   resuming from the newest checkpoint if one exists;
5. write ``runs/demo/report.md`` with the loss curve, figures and samples;
6. second act: finetune it on instructions built from standard-library
   functions (:mod:`llamaforge.demo_acts`, ``configs/demo-finetune.toml``);
7. evaluate both models on a smoke set written in the benchmarks' schemas.

Besides the run itself it leaves what the README's next commands read:
``runs/demo/final`` (the pretrained model as a plain native folder, refreshed
on every run), ``runs/demo/corpus.jsonl`` (the gathered documents, one
``{"text": ...}`` per line) and ``runs/demo/eval-data``.

Decisions:

* **Validation split.** The loader holds out the *tail* of a token folder, so
  the demo decides what the tail is: documents drawn at random (seed
  ``data.seed``) until they hold about 5 % of each source's text are written
  after the training documents, and
  ``data.val_fraction`` is set so that the held-out windows are exactly the
  windows lying wholly inside those documents. Validation is therefore a fair
  random sample of documents of both kinds (package READMEs and stdlib code),
  not one source's tail, and never shares a window with training text.
* **Samples** are drawn at temperature 0.8 with top-p 0.9 and a fixed seed
  (reproducible, and free of the repetition loops greedy decoding of a tiny
  model falls into), and stop at the first blank line or after 64 tokens.
  Prompts are openings of the kinds of text the corpus holds.
* **Workload.** Sized by work, not by wall time: 200 steps of 4,096 tokens
  pretraining and 40 of 4,096 finetuning, so that a 2-core machine at half the
  speed of the one measured in the README still finishes in under 4 minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEMO_CONFIG = CONFIGS / "demo.toml"
PROMPTS = (
    "def read_file(path):\n",
    'class Parser:\n    """',
    "## Installation\n\n",
    "This package provides a",
    "import os\nimport sys\n\n\ndef ",
)
VAL_SHARE = 0.05  # of each source's text


def sampling_config(max_new_tokens: int = 64):
    from llamaforge.inference.sampling import SamplingConfig

    return SamplingConfig(
        max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.9, stop=("\n\n",), seed=0
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument(
        "--config", type=Path, default=DEMO_CONFIG, help="default: configs/demo.toml"
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="section.field=value",
        help="override pretraining config fields, e.g. train.max_steps=50",
    )  # fmt: skip
    parser.add_argument("--corpus-mb", type=float, default=8.0, help="text to gather (MB)")
    parser.add_argument(
        "--finetune-set", action="append", default=[], metavar="section.field=value",
        help="override a field of configs/demo-finetune.toml (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--pairs", type=int, default=640, help="instruction pairs to build (default: 640)"
    )
    parser.add_argument(
        "--fresh", action="store_true",
        help="delete what an earlier demo wrote in the run folder first (other files are kept)",
    )  # fmt: skip
    parser.set_defaults(run=run)


# Everything the demo writes in its run folder; ``--fresh`` removes these and nothing else.
DEMO_OUTPUTS = (
    "tokenizer.model", "tokenizer.vocab", "tokens", "checkpoints", "final", "corpus.jsonl",
    "instructions.jsonl", "finetune", "eval", "eval-data", "tensorboard", "metrics.jsonl",
    "summary.json", "report.md", "loss.png", "tasks.png", "finetune_data.json",
)  # fmt: skip


def remove_demo_outputs(run_dir: Path) -> None:
    """``--fresh``: delete the demo's own outputs; a user's files in the folder survive."""
    for name in DEMO_OUTPUTS:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def write_corpus(documents: list[str], path: Path) -> None:
    """The gathered documents as JSON lines, the input the README's own-text examples read."""
    import json

    from llamaforge.data.shards import atomic_write_text

    atomic_write_text(path, "".join(json.dumps({"text": d}) + "\n" for d in documents))


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def split_documents(documents, share: float, seed: int):
    """(train, val): a random sample of each source's documents holding about ``share`` of its text.

    Documents are visited in a seeded random order and one is held out when it
    still fits the source's budget (``share`` of its characters), so one huge
    file cannot make validation a single document; each source gives at least
    one (its smallest, if none fits) and keeps at least one for training.
    """
    rng = random.Random(seed)
    by_source = defaultdict(list)
    for doc in documents:
        by_source[doc.source].append(doc)
    train, val = [], []
    for source in sorted(by_source):
        docs = by_source[source]
        budget = share * sum(len(d.text) for d in docs)
        order = rng.sample(range(len(docs)), len(docs))
        picked, used = set(), 0
        for i in order:
            if used + len(docs[i].text) <= budget:
                picked.add(i)
                used += len(docs[i].text)
        if not picked and len(docs) > 1:
            picked.add(min(range(len(docs)), key=lambda i: len(docs[i].text)))
        val += [d for i, d in enumerate(docs) if i in picked]
        train += [d for i, d in enumerate(docs) if i not in picked]
    rng.shuffle(train)  # interleave prose and code
    rng.shuffle(val)
    return train, val


def tail_fraction(n_tokens: int, n_val_tokens: int, seq_len: int) -> float:
    """``data.val_fraction`` whose held-out windows lie wholly in the last ``n_val_tokens``."""
    n_windows = (n_tokens - 1) // seq_len
    first_val_window = -(-(n_tokens - n_val_tokens) // seq_len)  # ceil
    k = n_windows - first_val_window
    if k < 1:
        return 0.0
    return (k - 0.5) / n_windows  # ceil(f * n) == k, free of float round-off


def run(args: argparse.Namespace) -> int:
    from llamaforge.data.local_corpus import describe_sources, iter_local_documents
    from llamaforge.data.tokenize_folder import tokenize_to_shards
    from llamaforge.demo_acts import eval_act, finetune_act, write_sections
    from llamaforge.errors import ConfigError, DataError
    from llamaforge.tokenizer import Tokenizer, train_tokenizer
    from llamaforge.train.config import load_train_config
    from llamaforge.train.report import write_run_report
    from llamaforge.train.trainer import Trainer

    started = time.perf_counter()
    run_dir: Path = args.run_dir
    if args.fresh and run_dir.is_dir():
        remove_demo_outputs(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not args.config.is_file():
        raise ConfigError(f"{args.config}: demo config not found; pass --config PATH")
    tokenizer_path, tokens_dir = run_dir / "tokenizer.model", run_dir / "tokens"
    fixed = [
        f"data.tokenizer={str(tokenizer_path)!r}",
        f"data.sources=[{{path = {str(tokens_dir)!r}, weight = 1.0}}]",
        f"train.run_dir={str(run_dir)!r}",
    ]
    cfg = load_train_config(args.config, [*fixed, *args.overrides])

    _say(f"1/7 corpus: {describe_sources()}")
    docs = list(iter_local_documents(max_bytes=int(args.corpus_mb * 1e6)))
    train_docs, val_docs = split_documents(docs, VAL_SHARE, cfg.data.seed)
    documents = [d.text for d in train_docs + val_docs]
    _say(f"    {len(docs)} documents, {sum(map(len, documents)) / 1e6:.1f} M characters")
    write_corpus(documents, run_dir / "corpus.jsonl")

    if tokenizer_path.is_file():
        tokenizer = Tokenizer(tokenizer_path)
        _say(f"2/7 tokenizer: reusing {tokenizer_path}")
    else:
        _say(f"2/7 tokenizer: training BPE, vocabulary {cfg.model_config.vocab_size}")
        tokenizer = train_tokenizer(
            tokenizer_path, texts=documents, vocab_size=cfg.model_config.vocab_size
        )

    _say(f"3/7 tokens: {tokens_dir}")
    order = hashlib.sha256("\n".join(d.path for d in train_docs + val_docs).encode()).hexdigest()
    made_from = {"demo_documents": order, "demo_val_documents": len(val_docs)}
    index = tokenize_to_shards(documents, tokenizer, tokens_dir, made_from=made_from, report=_say)
    n_val_tokens = sum(
        map(len, tokenizer.encode_batch([d.text for d in val_docs], bos=True, eos=True))
    )
    fraction = tail_fraction(index.n_tokens, n_val_tokens, cfg.data.seq_len)
    if fraction <= 0:
        raise DataError("the held-out documents hold too few tokens; raise --corpus-mb")
    cfg = load_train_config(
        args.config, [*fixed, f"data.val_fraction={fraction!r}", *args.overrides]
    )
    split_note = (
        f"Validation: {len(val_docs)} of {len(docs)} documents, drawn at random (seed "
        f"{cfg.data.seed}) until they hold about {VAL_SHARE:.0%} of each source's text ("
        + ", ".join(
            f"{sum(d.source == s for d in val_docs)} {s}" for s in sorted({d.source for d in docs})
        )
        + f"), {n_val_tokens:,} tokens written after the training documents; "
        f"data.val_fraction = {fraction:.5f} holds out exactly the windows inside them."
    )
    _say(
        f"    {index.n_tokens:,} tokens ({sum(map(len, documents)) / index.n_tokens:.2f} chars/token)"
    )
    _say("    " + split_note)

    _say(f"4/7 pretraining {cfg.model_config.num_params() / 1e6:.2f}M parameters for "
         f"{cfg.max_steps} steps of {cfg.data.batch_tokens:,} tokens (resumes if interrupted)")  # fmt: skip
    trainer = Trainer(cfg)
    result = trainer.run()
    if result.stopped_by != "finished":
        _say(f"stopped by {result.stopped_by} at step {result.steps}; run `make demo` to resume")
        return 1

    _say("5/7 report with samples")
    report = write_run_report(
        cfg, result, trainer.model, PROMPTS, title="llamaforge demo run",
        sampling=sampling_config(), extra_notes=[split_note],
    )  # fmt: skip
    base = Path(result.checkpoint)
    from llamaforge.formats import convert

    convert(base, run_dir / "final", dst_format="native", overwrite=True)
    used = {d.path for d in docs}
    finetuned = finetune_act(args, run_dir, base, tokenizer_path, used, trainer.model, _say)
    if finetuned is None:
        return 1
    evaluation = eval_act(run_dir, tokenizer_path, trainer.model, base, finetuned, _say)
    write_sections(report, [finetuned["section"], evaluation])
    fell = (
        f"validation loss {result.initial_val_loss:.3f} -> {result.val_loss:.3f}"
        if result.val_loss is not None and result.initial_val_loss is not None
        else f"training loss {result.train_loss:.3f}"
    )
    _say(
        f"done in {time.perf_counter() - started:.0f} s: {fell}; held-out response loss "
        f"{finetuned['before']:.3f} -> {finetuned['after']:.3f} after finetuning; report: {report}"
    )
    return 0
