"""The ``llamaforge`` command: one entry point, one sub-command per job.

Each sub-command lives next to the code it drives; this file only maps names
to ``module:configure`` functions and imports the chosen one, so ``llamaforge
carbon`` does not pay for importing the trainer.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable

from llamaforge.errors import LlamaforgeError

# name -> ("module:function that adds arguments and sets `run`", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("llamaforge.demo:configure", "tiny end-to-end run on real local text (make demo)"),
    "train-tokenizer": (
        "llamaforge.tokenizer.cli:configure_train",
        "train a SentencePiece BPE tokenizer (split digits, byte fallback)",
    ),
    "tokenize": (
        "llamaforge.data.cli:configure_tokenize",
        "tokenize JSONL/txt documents into a memory-mapped token folder",
    ),
    "data": (
        "llamaforge.data.build_cli:configure_data",
        "build the pretraining mixture from raw dumps (data build CONFIG.toml)",
    ),
    "train": ("llamaforge.train.cli:configure_train", "pretrain a model from a TOML config"),
    "eval": (
        "llamaforge.eval.cli:configure_eval",
        "zero/few-shot benchmarks of the paper on a checkpoint",
    ),
    "eval-loss": (
        "llamaforge.train.cli:configure_eval_loss",
        "loss and perplexity of a checkpoint on token data",
    ),
    "generate": ("llamaforge.inference.cli:configure", "stream a completion from a checkpoint"),
    "convert": (
        "llamaforge.formats.cli:configure",
        "convert checkpoints between native, Hugging Face and Meta layouts",
    ),
    "carbon": ("llamaforge.train.carbon:configure", "energy and CO2 of a training run (§2.5)"),
}


def build_parser(
    command: str | None,
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser | None]:
    """The top-level parser and, when ``command`` is known, its sub-command parser."""
    parser = argparse.ArgumentParser(prog="llamaforge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None
    for name, (target, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module_name, function = target.split(":")
            getattr(importlib.import_module(module_name), function)(sub_parser)
            chosen = sub_parser
    return parser, chosen


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a sub-command's options may come between its positionals.

    ``llamaforge train CONFIG --quiet optim.lr=1e-3`` must work, but argparse
    stops a ``nargs="*"`` positional at the first option. The top-level parser
    cannot parse intermixed (it has sub-commands), so the sub-command's own
    parser reads everything after the command name.
    """
    command = next((a for a in argv if not a.startswith("-")), None)
    parser, chosen = build_parser(command if command in COMMANDS else None)
    if chosen is None or argv[0] != command:
        return parser.parse_args(argv)  # help, or an unknown command: argparse explains
    if chosen._subparsers is not None:  # nested commands (``data build``): argparse cannot intermix
        args = chosen.parse_args(argv[1:])
    else:
        args = chosen.parse_intermixed_args(argv[1:])
    args.command = command
    return args


def one_line_warnings(command: str) -> Callable[..., str]:
    """A ``warnings.formatwarning`` that prints llamaforge's own warnings as one line.

    They are messages for the user, like the errors; where in our code they
    were raised is noise. Warnings of other libraries keep Python's format.
    """
    default = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None) -> str:
        if category.__module__.startswith("llamaforge."):
            return f"llamaforge {command}: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    return format_warning


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    previous, warnings.formatwarning = warnings.formatwarning, one_line_warnings(args.command)
    try:
        result = args.run(args)
    except KeyboardInterrupt:
        return 130
    except LlamaforgeError as error:
        print(f"llamaforge {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
