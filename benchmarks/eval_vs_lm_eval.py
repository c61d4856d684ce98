"""``llamaforge eval`` vs lm-eval's own Hugging Face backend (``HFLM``), same model, same items.

One model (random weights; a SentencePiece tokenizer trained on the fly) is
exported once as a Hugging Face folder; both sides read that folder. The
items are ``--items`` PIQA-shaped multiple-choice documents written to local
files: ``DIR/piqa/validation.jsonl`` for ``llamaforge eval --data-dir`` and a
custom lm-eval task YAML (``lf_piqa``: lm-eval's own piqa prompt,
``"Question: {goal}\\nAnswer:"`` -> `` {sol1}``/`` {sol2}``) pointing at the same
file, so nothing is downloaded. Two comparisons, sides in turns:

* in-process: the log-likelihood requests of every item, ours through
  ``llamaforge.eval.likelihood.loglikelihood``, theirs through
  ``HFLM.loglikelihood`` (model loaded before timing); prints the max
  |difference| of the log-likelihoods and the ratio;
* whole command: ``python -m llamaforge eval FOLDER --tasks piqa`` vs
  ``python -m lm_eval --model hf ... --tasks lf_piqa`` (start-up, loading and
  scoring), with the accuracy each reports.

    python benchmarks/eval_vs_lm_eval.py [--dim 256 --layers 4 --items 200 --batch-size 16
        --repeats 3 --goal-words 4,12 --sol-words 3,15 --profile]

``--choices N`` gives every item N solutions in the in-process comparison (a
HellaSwag-like four endings with ``--choices 4``); the whole command always
scores the PIQA pair. ``--goal-words`` / ``--sol-words`` set the lengths of the question and of each
solution (uniform word counts): the defaults are PIQA-like short prompts; a long
question (``--goal-words 40,80``) is the shape of passage tasks (RACE, HellaSwag
contexts), where prefix sharing saves most. ``--preamble-words N`` puts one fixed
text of N words before every question in the in-process comparison (a k-shot
prompt whose shots are the same for every item, as MMLU's; the window becomes
2048), the shape of ``llamaforge.eval.shared_rows``. ``--minimal-pairs`` makes
the second solution the first with one word replaced (both comparisons), where
the two inputs' common start is computed once (``shared_rows.ending_tree``).
``--no-command`` skips the whole-command comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import spread, time_in_turns

from llamaforge.eval.likelihood import loglikelihood
from llamaforge.formats import save_any
from llamaforge.model import ModelConfig, build_model
from llamaforge.tokenizer import train_tokenizer

WORDS = [
    "cat",
    "dog",
    "water",
    "cup",
    "glass",
    "stone",
    "fire",
    "heat",
    "cold",
    "paper",
    "knife",
    "rope",
    "box",
    "door",
    "wall",
    "tree",
]
TASK_YAML = """task: lf_piqa
dataset_path: json
dataset_kwargs:
  cache_dir: {cache}
  data_files:
    test: {file}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_choice: "{{{{[sol1, sol2]}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def items(
    n: int,
    seed: int = 0,
    goal_words: tuple[int, int] = (4, 12),
    sol_words: tuple[int, int] = (3, 15),
    extra_choices: int = 0,
    minimal_pairs: bool = False,
) -> list[dict]:
    """PIQA-shaped documents of words drawn from ``WORDS``.

    ``minimal_pairs``: ``sol2`` is ``sol1`` with one word (at a uniform
    position) replaced, the shape of PIQA pairs whose wrong solution is the
    right one with a word or two changed (the dataset card's example:
    "...ripped paper strips, ..." / "...ripped jeans material, ..."; how
    many real pairs are like it we could not count, having no copy of the
    data); the default draws the two independently, the case where
    continuations share nothing but the context.
    """
    rng = random.Random(seed)

    def phrase(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    def edited(solution: str) -> str:
        words = solution.split()
        at = rng.randrange(len(words))
        words[at] = rng.choice([w for w in WORDS if w != words[at]])
        return " ".join(words)

    docs = []
    for _ in range(n):
        goal = f"how do you {phrase(rng.randint(*goal_words))}?"
        sol1 = phrase(rng.randint(*sol_words))
        sol2 = edited(sol1) if minimal_pairs else phrase(rng.randint(*sol_words))
        docs.append({"goal": goal, "sol1": sol1, "sol2": sol2, "label": rng.randint(0, 1),
                     "more": [phrase(rng.randint(*sol_words)) for _ in range(extra_choices)]})  # fmt: skip
    return docs


def preamble_text(words: int, seed: int = 1) -> str:
    """``words`` words of ``WORDS`` with a full stop every twelfth: the shared few-shot text."""
    rng = random.Random(seed)
    return "".join(f"{rng.choice(WORDS)}{'.' if k % 12 == 11 else ''} " for k in range(words))


def profile_sides(sides: dict) -> None:
    """One profiled run per side: how much of it is matmul, and what that bounds.

    Both sides run the same ``aten::mm`` kernels; if ours did nothing but its
    matmuls it would take ``mm_ours`` seconds, so ``total_theirs / mm_ours`` is
    the most any rewrite of the non-matmul code could reach without computing
    fewer matmul FLOPs.
    """
    from torch.profiler import profile

    seconds = {}
    for name, run in sides.items():
        with profile() as prof:
            run()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::bmm")) / 1e6
        attention = sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key)
        seconds[name] = (mm, total, attention / 1e6)
    print("\n## Profile (one run per side, under torch.profiler)\n")
    for name, (mm, total, attention) in seconds.items():
        print(f"{name}: matmuls {mm:.3f} s of {total:.3f} s ({100 * mm / total:.0f} %), "
              f"SDPA {attention:.3f} s, the rest {total - mm - attention:.3f} s")  # fmt: skip
    (mm_ours, *_), (mm_theirs, total_theirs, _) = seconds["llamaforge"], seconds["lm-eval HFLM"]
    print(f"matmul time theirs / ours = {mm_theirs / mm_ours:.2f}x; with every non-matmul op "
          f"free ours would be {total_theirs / mm_ours:.2f}x HFLM")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, default in (("dim", 256), ("layers", 4), ("heads", 4), ("items", 200)):
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--batch-size", type=int, default=16)
    for flag, default in (("goal-words", "4,12"), ("sol-words", "3,15")):
        parser.add_argument(f"--{flag}", default=default, help="LOW,HIGH words (uniform)")
    parser.add_argument(
        "--choices", type=int, default=2,
        help="solutions per item in the in-process comparison (the whole command scores 2)",
    )  # fmt: skip
    parser.add_argument(
        "--preamble-words", type=int, default=0,
        help="a fixed text of this many words before every question in the in-process "
             "comparison, as a k-shot prompt with the same shots for every item (MMLU)",
    )  # fmt: skip
    parser.add_argument(
        "--minimal-pairs", action="store_true",
        help="the second solution is the first with one word replaced (PIQA pairs can be "
             "one or two words apart); default: independent solutions",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true",
        help="also profile one in-process run per side: matmul time, total, and the ratio "
             "ours would reach if every non-matmul op were free",
    )  # fmt: skip
    parser.add_argument(
        "--no-command", action="store_true",
        help="skip the whole-command comparison (in-process figures only)",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    root = Path(tempfile.mkdtemp(prefix="eval_vs_lm_eval_"))
    words = {k: tuple(map(int, getattr(args, k).split(","))) for k in ("goal_words", "sol_words")}
    docs = items(args.items, **words, extra_choices=max(0, args.choices - 2),
                 minimal_pairs=args.minimal_pairs)  # fmt: skip
    lines = [f"{d['goal']} {d['sol1']} {d['sol2']}" for d in docs] * 3
    tokenizer = train_tokenizer(
        root / "tok.model", texts=lines, vocab_size=300, progress=False, num_threads=1
    )
    torch.manual_seed(0)
    cfg = ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                      vocab_size=tokenizer.vocab_size,
                      max_seq_len=2048 if args.preamble_words else 256)  # fmt: skip
    model = build_model(cfg).eval()
    folder = save_any(model, root / "hf", "hf", tokenizer_path=root / "tok.model")
    data = root / "data" / "piqa"
    data.mkdir(parents=True)
    (data / "validation.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in d.items() if k != "more"}) + "\n" for d in docs)
    )
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "lf_piqa.yaml").write_text(
        TASK_YAML.format(cache=root / "hf_cache", file=data / "validation.jsonl")
    )
    preamble = preamble_text(args.preamble_words)
    requests = [
        (f"{preamble}Question: {d['goal']}\nAnswer:", " " + sol)
        for d in docs
        for sol in [d["sol1"], d["sol2"], *d["more"]][: args.choices]
    ]
    print(
        f"model dim={cfg.dim} layers={cfg.n_layers} window={cfg.max_seq_len} params={cfg.num_params() / 1e6:.1f}M "
        f"vocab={cfg.vocab_size}; {len(docs)} items, {len(requests)} requests; batch "
        f"{args.batch_size}; words per goal {args.goal_words}, per solution {args.sol_words}, "
        f"in the shared preamble {args.preamble_words}; minimal pairs {args.minimal_pairs}; "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )

    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from llamaforge.formats import load_any

    ours_model, _ = load_any(folder)
    ours_model.eval()
    hflm = HFLM(pretrained=str(folder), device="cpu", batch_size=args.batch_size, dtype="float32")
    instances = [
        Instance("loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)
    ]
    sides = {
        "llamaforge": lambda: [
            lp for lp, _ in loglikelihood(ours_model, tokenizer, requests, batch_size=args.batch_size)
        ],
        "lm-eval HFLM": lambda: [lp for lp, _ in hflm.loglikelihood(instances, disable_tqdm=True)],
    }  # fmt: skip
    samples, results = time_in_turns(sides, warmup=1, repeats=args.repeats)
    diff = max(abs(a - b) for a, b in zip(*results.values(), strict=True))
    median = {k: statistics.median(v) for k, v in samples.items()}
    print("\n## In-process log-likelihoods of every request\n")
    for name, times in samples.items():
        print(f"{name}: {len(requests) / median[name]:,.1f} requests/s; seconds {spread(times)}")
    print(f"ratio llamaforge / HFLM = {median['lm-eval HFLM'] / median['llamaforge']:.2f}x "
          f"(medians); max |log-likelihood difference| = {diff:.2e}")  # fmt: skip

    if args.profile:
        profile_sides(sides)
    if args.no_command:
        return

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    out = {"llamaforge": root / "ours.json", "lm-eval HFLM": root / "theirs"}
    commands = {
        "llamaforge": [sys.executable, "-m", "llamaforge", "eval", str(folder), "--tasks", "piqa",
                       "--data-dir", str(root / "data"), "--shots", "0", "--device", "cpu",
                       "--batch-size", str(args.batch_size), "--no-progress",
                       "--out", str(out["llamaforge"]), "--overwrite"],  # each repeat: same file
        "lm-eval HFLM": [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                         f"pretrained={folder},dtype=float32", "--tasks", "lf_piqa",
                         "--include_path", str(tasks), "--device", "cpu",
                         "--batch_size", str(args.batch_size),
                         "--output_path", str(out["lm-eval HFLM"])],
    }  # fmt: skip

    def runner(command: list[str]):
        def run() -> float:
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            return time.perf_counter() - start

        return run

    whole, _ = time_in_turns({k: runner(c) for k, c in commands.items()}, 0, args.repeats)
    ours_acc = json.loads(out["llamaforge"].read_text())["results"]["piqa"]["metrics"]
    theirs_file = next(out["lm-eval HFLM"].rglob("results_*.json"))
    theirs_acc = json.loads(theirs_file.read_text())["results"]["lf_piqa"]
    print("\n## Whole command (start-up, loading, scoring)\n")
    for name, times in whole.items():
        print(f"{name}: seconds {spread(times)}")
    ratio = statistics.median(whole["lm-eval HFLM"]) / statistics.median(whole["llamaforge"])
    print(f"ratio llamaforge / lm-eval HFLM = {ratio:.2f}x (medians)")
    print(f"llamaforge eval metrics: {ours_acc}")
    print(f"lm-eval metrics: { {k: v for k, v in theirs_acc.items() if 'acc' in k} }")
    print("(llamaforge's acc_raw is lm-eval's acc: the unnormalised log-likelihood choice)")


if __name__ == "__main__":
    from common import report_load

    with report_load():
        main()
