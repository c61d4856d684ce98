"""The ``llamaforge`` command: one entry point, one sub-command per job.

Each sub-command lives next to the code it drives; this file only maps names
to ``module:configure`` functions and imports the chosen one, so ``llamaforge
carbon`` does not pay for importing the trainer.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import sys
import warnings
from collections.abc import Callable

from llamaforge import __version__
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
    "finetune": (
        "llamaforge.finetune.cli:configure",
        "instruction finetuning (LLaMA-I, §4) from a checkpoint and a TOML config",
    ),
    "eval": (
        "llamaforge.eval.cli:configure_eval",
        "zero/few-shot benchmarks of the paper on a checkpoint",
    ),
    "eval-loss": (
        "llamaforge.train.cli:configure_eval_loss",
        "loss and perplexity of a checkpoint on token data",
    ),
    "generate": ("llamaforge.inference.cli:configure", "stream a completion from a checkpoint"),
    "chat": (
        "llamaforge.inference.chat:configure",
        "multi-turn terminal chat with a finetuned checkpoint, in its template",
    ),
    "convert": (
        "llamaforge.formats.cli:configure",
        "convert checkpoints between native, Hugging Face and Meta layouts (or export GGUF)",
    ),
    "carbon": ("llamaforge.train.carbon:configure", "energy and CO2 of a training run (§2.5)"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option with a default says it, even one without a help text.

    argparse's own formatter skips options without ``help`` and repeats a
    default that the help already states; a help that mentions "default"
    is left as written.
    """

    def add_argument(self, action: argparse.Action) -> None:
        if action.help is None and self._default_text(action):
            action = copy.copy(action)
            action.help = self._default_text(action)
        super().add_argument(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default" in help_text.lower():
            return help_text
        return f"{help_text} {self._default_text(action)}".strip()

    @staticmethod
    def _default_text(action: argparse.Action) -> str:
        default = action.default
        if not action.option_strings and action.nargs not in ("?", "*"):
            return ""
        if default is None or default is False or default == argparse.SUPPRESS or default == []:
            return ""
        return "(default: %(default)s)"


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # nested commands (data build)
            for child in action.choices.values():
                _use_formatter(child)


def build_parser(
    command: str | None,
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser | None]:
    """The top-level parser and, when ``command`` is known, its sub-command parser."""
    parser = argparse.ArgumentParser(prog="llamaforge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"llamaforge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None
    for name, (target, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module_name, function = target.split(":")
            getattr(importlib.import_module(module_name), function)(sub_parser)
            _use_formatter(sub_parser)
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


def _rank_prefix() -> str:
    """``"rank N: "`` in a torchrun worker of a multi-process job, else nothing."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE", "1")
    if rank is None or "TORCHELASTIC_RUN_ID" not in os.environ and world == "1":
        return ""
    return f"rank {rank}: "


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors are one line on stderr (one per rank under torchrun).

    Under torchrun an unexpected exception is also reported as one line per
    rank instead of each rank's traceback (torchrun prints its own summary
    after them); ``LLAMAFORGE_TRACEBACK=1`` shows the tracebacks again.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    previous, warnings.formatwarning = warnings.formatwarning, one_line_warnings(args.command)
    prefix = _rank_prefix()
    try:
        result = args.run(args)
    except KeyboardInterrupt:
        return 130
    except LlamaforgeError as error:
        print(f"{prefix}llamaforge {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if not prefix or os.environ.get("LLAMAFORGE_TRACEBACK"):
            raise
        line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"{prefix}llamaforge {args.command}: {type(error).__name__}: {line} "
            "(LLAMAFORGE_TRACEBACK=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        warnings.formatwarning = previous
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
