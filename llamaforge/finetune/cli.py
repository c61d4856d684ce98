"""``llamaforge finetune CONFIG [section.field=value ...]``: the training loop on instruction data.

Nothing here trains: it checks that the config is a finetuning config and
hands it to ``llamaforge.train`` (the same trainer, checkpoints, SIGTERM
handling, metrics, torchrun layout and report as ``llamaforge train``), with
the same run-control flags (``--resume``, ``--fresh-run``,
``--allow-config-change``, ``--restart-over-damaged``, ``--skip-memory-check``),
which the trainer's errors name. The report's samples are instruction prompts
rendered in the run's template.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llamaforge.errors import ConfigError
from llamaforge.train.cli import add_run_flags

SAMPLE_INSTRUCTIONS = (
    "Give three tips for staying healthy.",
    "Write a Python function that reverses a string.",
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", type=Path, help="TOML config, e.g. configs/finetune/tiny-cpu.toml"
    )
    parser.add_argument(
        "overrides", nargs="*", default=[], metavar="section.field=value",
        help="override any field, e.g. finetune.init=runs/tiny/checkpoints/step_00000100",
    )  # fmt: skip
    add_run_flags(parser)  # the same --resume, --fresh-run, ... as `llamaforge train`
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from llamaforge.finetune.templates import load_template
    from llamaforge.train.cli import run_flag_overrides, train_and_report
    from llamaforge.train.config import load_train_config

    cfg = load_train_config(args.config, run_flag_overrides(args))
    if not cfg.finetune.enabled:
        raise ConfigError(
            f"{args.config}: finetune.data is not set; give the instruction data "
            "(a JSON/JSON-lines file or a datasets name), or use `llamaforge train` to pretrain"
        )
    template = load_template(cfg.finetune.template)
    prompts = [
        "".join(s.text for s in template.render([{"role": "user", "content": q}], True))
        for q in SAMPLE_INSTRUCTIONS
    ]
    return train_and_report(cfg, args, prompts)
