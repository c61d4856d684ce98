"""What finetuning checkpoints hold: LoRA adapters only, the chat template, a matching tokenizer."""

from __future__ import annotations

import copy
import io
import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from llamaforge.cli import main
from llamaforge.errors import CheckpointError, ConfigError
from llamaforge.finetune.lora import merge_lora
from llamaforge.finetune.templates import load_template
from llamaforge.formats import convert, load_any
from llamaforge.formats.huggingface import to_hf
from llamaforge.inference import chat as chat_module
from llamaforge.model import build_model
from llamaforge.tokenizer.trainer import train_tokenizer
from llamaforge.train.config import load_train_config
from llamaforge.train.trainer import Trainer
from tests.finetune import test_finetune_run as runs
from tests.finetune.conftest import TEXTS, WORDS
from tests.train.test_trainer import one_thread  # noqa: F401 (autouse fixture)

base = runs.base  # the tiny HF base model and instruction file (a module fixture)
finetune_config = runs.finetune_config

MARKERS = "### Instruction:\n### Input:\n### Response:\n<|user|>\n<|assistant|>\n" * 5
CUSTOM = """name = "mine"
default_system = ""
system = ""
user = "### Instruction:\\n{content}\\n"
assistant = "### Response:\\n"
assistant_end = ""
"""


def lora_trainer(base, tmp_path, init: Path, *overrides: str, template: str = "chat") -> Trainer:
    config = finetune_config(tmp_path / "ft.toml", base, init, tmp_path / "run", template=template)
    cfg = load_train_config(
        config, ["lora.enabled=true", "lora.rank=4", "train.max_steps=3", *overrides]
    )
    return Trainer(cfg, progress=False)


def test_lora_checkpoint_is_adapters_only_and_loads_merged_with_its_template(
    base, tmp_path, monkeypatch, capsys
) -> None:
    template_file = tmp_path / "mine.toml"
    template_file.write_text(CUSTOM, encoding="utf-8")
    template = load_template(str(template_file))
    trainer = lora_trainer(base, tmp_path, base["hf"], template=str(template_file))
    trainer.run()
    final = trainer.checkpoints.latest()
    template_file.unlink()  # chat and the export must not need the file any more
    config = json.loads((final / "config.json").read_text())
    assert config["lora"]["base"] == str(base["hf"].resolve())
    full = (base["hf"] / "model.safetensors").stat().st_size
    assert (final / "model.safetensors").stat().st_size * 10 < full

    merged = merge_lora(copy.deepcopy(trainer.model)).eval()
    loaded, _ = load_any(final)
    ids = torch.randint(
        0, merged.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert torch.equal(loaded.eval()(ids), merged(ids))

    seen = []

    class Recording(chat_module.ChatSession):
        def __init__(self, model, tokenizer, template, *args, **kwargs) -> None:
            seen.append(template)
            super().__init__(model, tokenizer, template, *args, **kwargs)

    monkeypatch.setattr(chat_module, "ChatSession", Recording)
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat sat\n"))
    argv = ["chat", str(final), "--temperature", "0", "--max-new-tokens", "3"]
    assert main(argv) == 0, capsys.readouterr().err
    assert seen == [template]

    hf = convert(final, tmp_path / "hf", dst_format="hf")
    exported = json.loads((hf / "tokenizer_config.json").read_text())["chat_template"]
    assert "### Instruction:" in exported and "<|user|>" not in exported
    reloaded, _ = load_any(hf)
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(ids), merged(ids), atol=1e-5)


def test_a_full_finetune_checkpoint_carries_its_template(base, tmp_path) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run")
    trainer = Trainer(load_train_config(config, ["train.max_steps=1"]), progress=False)
    trainer.run()
    data = json.loads((trainer.checkpoints.latest() / "config.json").read_text())
    assert data["chat_template"]["user"] == load_template("chat").user
    assert "lora" not in data


def test_resuming_adapters_over_a_replaced_base_is_refused(base, tmp_path) -> None:
    init = tmp_path / "base"
    shutil.copytree(base["hf"], init)
    lora_trainer(base, tmp_path, init).run()
    model, _ = load_any(init)
    with torch.no_grad():
        model.output.weight.add_(1.0)
    to_hf(model, init, tokenizer_path=init / "tokenizer.model", overwrite=True)
    trainer = lora_trainer(base, tmp_path, init)  # resumes its step-3 checkpoint
    with pytest.raises(CheckpointError, match="other base weights"):
        trainer.run()


def test_a_tokenizer_other_than_the_init_models_is_refused(base, tmp_path, tokenizer) -> None:
    config = finetune_config(tmp_path / "ft.toml", base, base["hf"], tmp_path / "run")
    copied = tmp_path / "same.model"
    shutil.copyfile(tokenizer.model_path, copied)  # the same file elsewhere is fine
    Trainer(load_train_config(config, [f"data.tokenizer={str(copied)!r}"]), progress=False)

    rng = random.Random(1)  # the fixture's recipe with other sentences: another model file
    texts = [" ".join(rng.choice(WORDS) for _ in range(15)) for _ in range(300)] + [MARKERS]
    other = train_tokenizer(tmp_path / "other.model", texts=texts, vocab_size=tokenizer.vocab_size,
                            progress=False, num_threads=1)  # fmt: skip
    assert other.vocab_size == tokenizer.vocab_size
    assert other.model_path.read_bytes() != tokenizer.model_path.read_bytes()
    with pytest.raises(ConfigError, match="is not the tokenizer of finetune.init") as error:
        Trainer(
            load_train_config(config, [f"data.tokenizer={str(other.model_path)!r}"]), progress=False
        )
    assert str(tmp_path / "other.model") in str(error.value)
    assert str(base["hf"]) in str(error.value)

    big = train_tokenizer(tmp_path / "big.model", texts=TEXTS, vocab_size=400,
                          progress=False, num_threads=1)  # fmt: skip
    with pytest.raises(ConfigError, match="has 400 pieces but the finetune.init model") as error:
        Trainer(
            load_train_config(config, [f"data.tokenizer={str(big.model_path)!r}"]), progress=False
        )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_init_model_without_a_tokenizer_accepts_any_that_fits(base, tmp_path, tokenizer):
    init = tmp_path / "bare"
    cfg = load_any(base["hf"])[0].config
    to_hf(build_model(cfg), init)
    config = finetune_config(tmp_path / "ft.toml", base, init, tmp_path / "run")
    trainer = Trainer(
        load_train_config(config, [f"data.tokenizer={str(tokenizer.model_path)!r}"]),
        progress=False,
    )
    assert trainer.tokenizer_source == str(tokenizer.model_path)
