"""``llamaforge generate CHECKPOINT --prompt TEXT``: stream completions to the terminal.

Defaults match ``SamplingConfig`` (greedy), so two runs print the same text;
pass ``--temperature 0.8 --top-p 0.95`` for the settings of Meta's example
script. Several ``--prompt`` are completed one after the other, each streamed
as it is generated, rather than batched: streaming interleaved sequences
would be unreadable. What is printed (echoed prompts too) goes through
:class:`~llamaforge.inference.terminal.SafeOutput`: control characters are
shown escaped and characters stdout's encoding cannot hold are replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llamaforge.inference.generate import stream
from llamaforge.inference.loading import add_device_arguments, load_model_and_tokenizer
from llamaforge.inference.sampling import SamplingConfig
from llamaforge.inference.terminal import SafeOutput

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    r"""Turn ``\n``, ``\t`` and ``\\`` typed in a shell into the characters.

    Stop strings are most often a newline, which a shell argument cannot
    hold conveniently. Only these three escapes are decoded so that
    non-ASCII text and other backslashes pass through unchanged.
    """
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", type=Path, help="model folder: native, training checkpoint, HF or Meta"
    )
    parser.add_argument(
        "--prompt", action="append", required=True, help="text to complete (repeatable)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus mass, 1 = off")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k likeliest, 0 = off")
    parser.add_argument("--seed", type=int, default=None, help="make sampling reproducible")
    parser.add_argument(
        "--stop",
        action="append",
        default=[],
        help=r"stop before this text (repeatable; \n and \t are understood)",
    )
    add_device_arguments(parser)
    parser.add_argument("--no-echo", action="store_true", help="do not print the prompt")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="decode with a compiled static-shape step (CUDA graphs on GPU): faster per "
        "token, but compiling first takes seconds to a minute; for long generations",
    )
    parser.set_defaults(run=run)


def sampling_from_args(args: argparse.Namespace) -> SamplingConfig:
    """The sampling options ``generate`` and ``chat`` share, as one config."""
    return SamplingConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        stop=tuple(unescape(s) for s in args.stop),
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    cfg = sampling_from_args(args)
    model, tokenizer = load_model_and_tokenizer(args.checkpoint, args.device, args.dtype)
    out = SafeOutput(sys.stdout)
    for i, prompt in enumerate(args.prompt):
        if i:
            out.write("\n")
        if not args.no_echo:
            out.write(prompt)
            out.flush()
        for piece in stream(model, tokenizer, prompt, cfg, compile=args.compile):
            out.write(piece)
            out.flush()
        out.write("\n")
        out.flush()
    return 0
