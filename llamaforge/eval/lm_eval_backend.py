"""A model backend for EleutherAI's lm-evaluation-harness, so any lm-eval task runs on our models.

Importing this module registers the backend as ``llamaforge`` in lm-eval's
model registry. lm-eval's own command line cannot import it, so run lm-eval
through this module, which imports it and then hands every argument to
lm-eval's command line unchanged::

    python -m llamaforge.eval.lm_eval_backend --model llamaforge \\
        --model_args pretrained=runs/demo/checkpoints/step_00000300,dtype=float32 \\
        --tasks hellaswag --batch_size 16 [--include_path my_tasks/] [--limit 100]

From Python, ``import llamaforge.eval.lm_eval_backend`` and call
``lm_eval.simple_evaluate(model="llamaforge", model_args="pretrained=PATH", ...)``,
or pass an instance: ``simple_evaluate(model=LlamaforgeLM(model=m, tokenizer=t), ...)``.

Decisions where lm-eval leaves the choice to the backend:

* The three request types delegate to our own code, so lm-eval numbers and
  ``llamaforge eval`` numbers are the same numbers: ``loglikelihood`` and
  ``loglikelihood_rolling`` to :mod:`llamaforge.eval.likelihood` (lm-eval's
  context/continuation split, BOS as the prefix of an empty context, left
  truncation, prefix sharing), ``generate_until`` to
  :mod:`llamaforge.inference.generate` (KV-cache decoding).
* ``generate_until`` normalises ``gen_kwargs`` with lm-eval's own
  ``normalize_gen_kwargs`` (``until``, ``max_gen_toks`` and its aliases,
  ``do_sample``/``temperature``); ``top_p``/``top_k`` are honoured, other keys
  are ignored with a warning. Greedy unless ``do_sample`` with a temperature
  above 0; a greedy request's ``temperature`` (which ``normalize_gen_kwargs``
  always sets) is consumed silently, not reported as ignored. Decoding is our
  runner's :func:`llamaforge.eval.generation.generate_completions`, so the
  generation budget follows its rule: the prompt keeps
  ``max(max_length - max_gen_toks, max_length // 2)`` tokens (cut from the
  left) and the completion ends at ``max_gen_toks`` or at ``max_length``,
  whichever comes first. Where ``max_gen_toks`` leaves half the window or more
  for the prompt this is lm-eval's Hugging Face rule; for a window of 256
  tokens or fewer, where lm-eval's default ``max_gen_toks=256`` would leave no
  room for any prompt (lm-eval itself refuses), the budget is what the context
  leaves. Completions are cut before the earliest ``until`` string (as
  lm-eval's ``postprocess_generated_text``); EOS always ends a completion.
* A CUDA ``device`` on a machine without one falls back to the CPU with a
  warning, because lm-eval's command line asks for ``cuda:0`` by default.
* ``batch_size="auto"`` (lm-eval's memory probe) is not implemented; it means
  the default of 16. Data parallelism is lm-eval's ``accelerate`` business and
  not supported: the backend is one process (rank 0 of 1).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs
from torch import nn

from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.eval.generation import generate_completions
from llamaforge.eval.likelihood import loglikelihood, loglikelihood_rolling, model_max_len
from llamaforge.inference.sampling import SamplingConfig

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_BATCH_SIZE = 16


def _device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"device={device!r} is not a torch device ({error})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        # lm-eval's command line asks for cuda:0 unless told otherwise
        logger.warning("device %s is not available here; using the CPU", dev)
        return torch.device("cpu")
    return dev


def _dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None  # keep the stored dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r}: choose one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _batch_size(batch_size: int | str | None) -> int:
    if batch_size is None or (isinstance(batch_size, str) and batch_size.startswith("auto")):
        return DEFAULT_BATCH_SIZE
    return _int_arg("batch_size", batch_size)


def _int_arg(name: str, value: Any, minimum: int = 1) -> int:
    """A whole-number model argument (lm-eval passes ``--model_args`` values as text or numbers).

    Checked before the model loads, with the argument's name: ``int("abc")``
    would be a bare ValueError after minutes of loading weights.
    """
    number = value
    if isinstance(number, str) and number.strip().isascii() and number.strip().isdigit():
        number = int(number)
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if type(number) is not int:  # True is not 1 here
        raise ConfigError(
            f"model argument {name}={value!r} is not a whole number; pass e.g. "
            f"--model_args {name}=256"
        )
    if number < minimum:
        raise ConfigError(f"model argument {name} must be >= {minimum}, got {number}")
    return number


def _bool_arg(name: str, value: Any) -> bool:
    """A yes/no model argument; a word that is neither is an error, not silently "no"."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ConfigError(f"model argument {name}={value!r} must be true or false")


class LlamaforgeLM(LM):
    """lm-eval ``LM`` over a llamaforge model: from a checkpoint folder or in memory.

    ``pretrained`` is a model folder in any format ``llamaforge.formats.load_any``
    reads (native, Hugging Face, Meta); its ``tokenizer.model`` is used unless
    ``tokenizer`` (a path or a tokenizer object) is given. ``max_length``
    overrides the model's context length (never beyond it).
    """

    def __init__(
        self,
        pretrained: str | os.PathLike | None = None,
        *,
        model: nn.Module | None = None,
        tokenizer: Any = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = "auto",
        batch_size: int | str | None = DEFAULT_BATCH_SIZE,
        max_length: int | str | None = None,
        max_gen_toks: int | str = 256,
        prefix_sharing: bool | str = True,
        progress: bool = True,
        max_batch_size: int | None = None,  # passed by lm-eval; only used by "auto"
    ) -> None:
        super().__init__()
        # Every argument is parsed before the weights load, so a typo fails at once.
        sizes = _batch_size(batch_size), _int_arg("max_gen_toks", max_gen_toks)
        length = None if max_length is None else _int_arg("max_length", max_length)
        sharing, show = _bool_arg("prefix_sharing", prefix_sharing), _bool_arg("progress", progress)
        dev = _device(device)
        if (pretrained is None) == (model is None):
            raise ConfigError("give exactly one of pretrained=PATH or model=<in-memory model>")
        if pretrained is not None:
            from llamaforge.formats import load_any

            model, tokenizer_path = load_any(pretrained, device=dev, dtype=_dtype(dtype, dev))
            if tokenizer is None:
                if tokenizer_path is None:
                    raise CheckpointError(
                        f"{pretrained} has no tokenizer.model: pass tokenizer=PATH in model_args"
                    )
                tokenizer = tokenizer_path
        elif isinstance(dtype, torch.dtype) or dtype not in (None, "auto"):
            model = model.to(dtype=_dtype(dtype, dev))
        if tokenizer is None:
            raise ConfigError("an in-memory model needs tokenizer=<Tokenizer or path>")
        if isinstance(tokenizer, (str, os.PathLike)):
            from llamaforge.tokenizer import Tokenizer

            tokenizer = Tokenizer(tokenizer)
        self.model = model.to(dev).eval()
        self.tokenizer = tokenizer
        self._device = dev
        self.batch_size, self.max_gen_toks = sizes
        window = model_max_len(model)
        self.max_length = window if length is None else min(length, window)
        self.prefix_sharing = None if sharing else False
        self.progress = show

    # lm-eval's fingerprint for request caches (--use_cache)
    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "model_path", type(self.tokenizer).__name__))

    def tok_encode(self, string: str, add_special_tokens: bool | None = None) -> list[int]:
        """Token ids with BOS unless ``add_special_tokens`` is False (lm-eval's convention)."""
        return self.tokenizer.encode(string, bos=add_special_tokens is not False)

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    def loglikelihood(
        self, requests: list[Any], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        pairs = [tuple(r.args) for r in requests]
        results = loglikelihood(
            self.model,
            self.tokenizer,
            pairs,
            batch_size=self.batch_size,
            progress=self.progress and not disable_tqdm,
            max_seq_len=self.max_length,
            prefix_sharing=self.prefix_sharing,
        )
        for pair, result in zip(pairs, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", pair, result)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        texts = [r.args[0] for r in requests]
        results = loglikelihood_rolling(
            self.model,
            self.tokenizer,
            texts,
            batch_size=self.batch_size,
            progress=self.progress and not disable_tqdm,
            max_seq_len=self.max_length,
        )
        for text, result in zip(texts, results, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), result)
        return results

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Completions grouped by identical ``gen_kwargs``, decoded by our runner's code."""
        out: list[str] = [""] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items())), []).append(i)
        for indices in groups.values():
            cfg = self._sampling(requests[indices[0]].args[1])
            completions = generate_completions(
                self.model,
                self.tokenizer,
                [requests[i].args[0] for i in indices],
                cfg,
                batch_size=self.batch_size,
                max_seq_len=self.max_length,
                progress=self.progress and not disable_tqdm,
            )
            for i, (text,) in zip(indices, completions, strict=True):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out

    def _sampling(self, gen_kwargs: dict) -> SamplingConfig:
        kwargs = dict(normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks))
        until = [s for s in kwargs.pop("until") if s]
        max_new = int(kwargs.pop("max_gen_toks"))
        sample = bool(kwargs.pop("do_sample", False))
        # normalize_gen_kwargs sets temperature 0.0 on every greedy request: not an ignored key
        temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
        top_p = float(kwargs.pop("top_p", None) or 1.0)
        top_k = int(kwargs.pop("top_k", None) or 0)
        if kwargs:
            logger.warning("llamaforge backend ignores gen_kwargs %s", sorted(kwargs))
        return SamplingConfig(
            max_new_tokens=max_new,
            temperature=temperature if sample else 0.0,
            top_p=top_p,
            top_k=top_k,
            stop=tuple(until),
        )


def main() -> None:
    """lm-eval's command line with the ``llamaforge`` backend registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    # Run as a script this file is ``__main__``; register the importable module's
    # class instead, so ``import llamaforge.eval.lm_eval_backend`` elsewhere sees one backend.
    from llamaforge.eval import lm_eval_backend as _backend

    _backend.main()
else:
    register_model("llamaforge")(LlamaforgeLM)
