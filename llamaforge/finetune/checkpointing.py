"""What a finetuning run adds to the training checkpoints the trainer writes.

The trainer's :class:`~llamaforge.train.checkpoint.CheckpointManager` writes
finetuning checkpoints like pretraining ones, plus what this module decides:

* ``"chat_template"`` in ``config.json``
  (:func:`~llamaforge.finetune.template_store.template_config`): the whole
  template the run trained with, so ``llamaforge chat CKPT`` and
  ``convert --to hf`` (``tokenizer_config.json`` ``chat_template``) need no
  ``--template``, even after a custom template file has gone.
* **Adapter-only LoRA checkpoints.** A single-process LoRA run started from
  ``finetune.init`` saves only the trainable parameters (the adapters) in
  ``model.safetensors`` and the optimizer state of those parameters (the
  optimizer holds nothing else), with a ``"lora"`` table
  (:func:`~llamaforge.finetune.adapters.adapter_config`) that points at
  ``finetune.init`` and its weights fingerprint. ``load_native`` merges such a
  folder on load (base + adapters), so convert/eval/generate/chat see plain
  weights; resuming loads the base from ``finetune.init`` (the trainer does
  that before it resumes) and then the adapters.

A LoRA run keeps full-state checkpoints (base and adapters together, LoRA
settings under ``train.lora``; still merged on load) where an adapter-only
folder would have no usable base: without ``finetune.init`` (the base is the
seeded initialisation, which no folder holds), when ``finetune.init`` is
itself a LoRA folder (a LoRA folder's base may not be another LoRA folder),
and under torchrun / FSDP2, whose sharded DCP checkpoints hold the full state
(gathering only the adapters of a sharded model is not implemented).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llamaforge.errors import CheckpointError, ConfigError


@dataclass
class CheckpointExtras:
    config: dict[str, Any] = field(default_factory=dict)  # merged into config.json
    adapters_only: bool = False  # model.safetensors holds only the trainable parameters


def checkpoint_extras(cfg, start, template, distributed: bool) -> CheckpointExtras:
    """The ``config.json`` additions and the weights layout of this run's checkpoints."""
    from llamaforge.finetune.template_store import TEMPLATE_KEY, template_config

    extras = CheckpointExtras()
    if not cfg.finetune.enabled:
        return extras
    if template is not None:
        extras.config[TEMPLATE_KEY] = template_config(template)
    init = cfg.finetune.init
    if not (cfg.lora.enabled and init and start.state is not None and not distributed):
        return extras
    from llamaforge.finetune.adapters import is_adapter_folder, weights_fingerprint

    if is_adapter_folder(init):
        return extras
    table = {k: v for k, v in _lora_dict(cfg).items() if k != "enabled"}
    table.update(
        base=str(Path(init).resolve()),
        base_format="auto",
        base_fingerprint=weights_fingerprint(start.state),
    )
    extras.config["lora"] = table
    extras.adapters_only = True
    return extras


def _lora_dict(cfg) -> dict[str, Any]:
    from llamaforge.finetune.lora import LoRAConfig

    return LoRAConfig(**asdict(cfg.lora)).to_dict()


def check_resume_base(folder: Path, extras: CheckpointExtras) -> None:
    """Refuse to resume adapters trained on another base than the one just loaded.

    The adapters only continue the run on the exact weights they were trained
    on; ``finetune.init`` replaced since the checkpoint was written would give
    another loss curve without a word. A full-state checkpoint carries its own
    base, so there is nothing to compare.
    """
    from llamaforge.train.checkpoint_files import read_json

    config = folder / "config.json"
    if not config.is_file():
        return
    stored = read_json(config).get("lora")
    if not isinstance(stored, dict) or "base_fingerprint" not in stored:
        return
    ours = extras.config.get("lora", {}).get("base_fingerprint")
    if ours is None:
        raise CheckpointError(
            f"{folder} holds only LoRA adapters, but this run does not save adapter-only "
            "checkpoints (lora.enabled off, no finetune.init, or a distributed run); resume it "
            f"in one process with lora.enabled = true and finetune.init = {stored.get('base')!r}"
        )
    if ours != stored["base_fingerprint"]:
        raise CheckpointError(
            f"{folder}: its adapters were trained on other base weights than finetune.init "
            f"now holds (fingerprint mismatch); put the original base back at "
            f"{stored.get('base')!r} or start a fresh run"
        )


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_tokenizer_fits(cfg, start, tokenizer) -> None:
    """Refuse, before the first step, a tokenizer that is not the init model's.

    Its vocabulary must fit the model's embedding (``vocab_size`` may be padded
    larger, never smaller), and when ``finetune.init`` holds a
    ``tokenizer.model`` and ``data.tokenizer`` names another file, the two must
    be the same file content (sha256): a different tokenizer with the same
    vocabulary size maps every id to another piece and trains on nonsense.
    """
    init = cfg.finetune.init
    if not init or start.state is None:
        return
    vocab = start.model_config.vocab_size
    source = cfg.data.tokenizer or start.tokenizer
    if tokenizer.vocab_size > vocab:
        raise ConfigError(
            f"tokenizer {source} has {tokenizer.vocab_size} pieces but the finetune.init "
            f"model {init} has vocab_size {vocab}; use the tokenizer the model was trained with"
        )
    ours, theirs = cfg.data.tokenizer, start.tokenizer
    if not (ours and theirs) or Path(ours).resolve() == Path(theirs).resolve():
        return
    try:
        same = _sha256(ours) == _sha256(theirs)
    except OSError as error:
        raise ConfigError(f"data.tokenizer {ours}: cannot be read ({error})") from error
    if not same:
        raise ConfigError(
            f"data.tokenizer {ours} is not the tokenizer of finetune.init ({theirs}): the files "
            "differ; remove data.tokenizer to use the checkpoint's own"
        )
