"""The Hugging Face export renders chats exactly as our template + tokenizer do."""

from __future__ import annotations

import json

import pytest

from llamaforge.finetune.lora import LoRAConfig, apply_lora
from llamaforge.finetune.template_store import TEMPLATE_KEY, template_config
from llamaforge.finetune.templates import encode_segments, load_template
from llamaforge.formats import convert, save_any
from llamaforge.formats.huggingface import to_hf
from llamaforge.model import ModelConfig, build_model

transformers = pytest.importorskip("transformers")

CFG = ModelConfig(dim=32, n_layers=1, n_heads=4, vocab_size=400, multiple_of=16, max_seq_len=128)
SYSTEM = {"role": "system", "content": "You are terse; answer in {content} braces ñ."}
TURNS = [
    {"role": "user", "content": "Name 3 animals."},
    {"role": "assistant", "content": "The dog, the cat and 2 birds."},
    {"role": "user", "content": "What is 12 plus 30?"},
    {"role": "assistant", "content": "It is 42 – café."},
]
CONVERSATIONS = {
    "single": TURNS[:1],
    "single-answered": TURNS[:2],
    "multi": TURNS[:3],
    "multi-answered": TURNS,
    "system-single": [SYSTEM, *TURNS[:1]],
    "system-multi": [SYSTEM, *TURNS],
}


def our_text(template, tokenizer, messages, add_generation_prompt) -> str:
    bos, eos = (tokenizer.id_to_piece(i) for i in (tokenizer.bos_id, tokenizer.eos_id))
    segments = template.render(messages, add_generation_prompt=add_generation_prompt)
    return bos + "".join(s.text + (eos if s.trainable else "") for s in segments)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, chat_tokenizer):
    root = tmp_path_factory.mktemp("hf")
    model = build_model(CFG)
    out = {}
    for name in ("alpaca", "chat"):
        folder = to_hf(model, root / name, chat_tokenizer.model_path,
                       chat_template=load_template(name))  # fmt: skip
        out[name] = transformers.AutoTokenizer.from_pretrained(folder)
    return out


@pytest.mark.parametrize("generation", [False, True], ids=["plain", "gen-prompt"])
@pytest.mark.parametrize("conversation", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", ["alpaca", "chat"])
def test_apply_chat_template_matches_our_text_and_ids(
    exported, chat_tokenizer, name, conversation, generation
) -> None:
    template, hf = load_template(name), exported[name]
    messages = CONVERSATIONS[conversation]
    text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    assert text == our_text(template, chat_tokenizer, messages, generation)
    # The export splits special-token strings found in text, as SentencePiece does (a literal
    # "<s>" in a document is text, not BOS); the rendered template's BOS/EOS must be read as
    # special tokens, so the rendered prompt is tokenized with split_special_tokens=False.
    ids = hf.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation,
        tokenizer_kwargs={"split_special_tokens": False},
    )  # fmt: skip
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    segments = template.render(messages, add_generation_prompt=generation)
    assert list(ids) == encode_segments(chat_tokenizer, segments)[0]


def test_alpaca_input_field_renders_the_same(exported, chat_tokenizer) -> None:
    messages = [{"role": "user", "content": "Sum these.", "input": "1 2 3"}]
    text = exported["alpaca"].apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)  # fmt: skip
    assert text == our_text(load_template("alpaca"), chat_tokenizer, messages, True)
    assert "### Input:\n1 2 3" in text


def test_convert_carries_the_template_from_a_native_lora_folder(tmp_path, chat_tokenizer) -> None:
    from llamaforge.finetune.adapters import adapter_config, save_adapters

    base = build_model(CFG)
    base_dir = save_any(base, tmp_path / "base", "native", tokenizer_path=chat_tokenizer.model_path)
    lora = LoRAConfig()
    table = adapter_config(lora, base_dir, base)
    apply_lora(base, lora)
    extra = {TEMPLATE_KEY: template_config(load_template("chat"))}
    folder = save_adapters(base, tmp_path / "ft", table, extra_config=extra)
    hf_dir = convert(folder, tmp_path / "hf", dst_format="hf")
    config = json.loads((hf_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == load_template("chat").to_jinja("<s>", "</s>")
    again = convert(hf_dir, tmp_path / "hf2", dst_format="hf")  # Hugging Face -> Hugging Face
    assert (
        json.loads((again / "tokenizer_config.json").read_text())["chat_template"]
        == (config["chat_template"])
    )
    native = convert(folder, tmp_path / "native", dst_format="native")
    assert json.loads((native / "config.json").read_text())[TEMPLATE_KEY]["name"] == "chat"
    assert "lora" not in json.loads((native / "config.json").read_text())


def test_the_template_survives_a_round_trip_through_hugging_face(tmp_path, chat_tokenizer) -> None:
    from llamaforge.finetune.template_store import template_from_folder
    from llamaforge.formats import read_chat_template

    chat = load_template("chat")
    hf_dir = to_hf(build_model(CFG), tmp_path / "hf", chat_tokenizer.model_path, chat_template=chat)
    assert read_chat_template(hf_dir, "hf") == chat
    native = convert(hf_dir, tmp_path / "native", dst_format="native")
    assert template_from_folder(native) == chat  # Hugging Face -> native keeps it
    # a hand-edited Jinja is not ours any more: kept as Jinja where there is a place for it
    config_path = hf_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = config["chat_template"].replace("{{ bos_token }}", "", 1)
    config_path.write_text(json.dumps(config))
    assert read_chat_template(hf_dir, "hf") == config["chat_template"]
    with pytest.warns(UserWarning, match="no place for"):
        convert(hf_dir, tmp_path / "native2", dst_format="native")
    with pytest.warns(UserWarning, match="Meta folders hold none"):
        convert(hf_dir, tmp_path / "meta", dst_format="meta")


def test_a_template_with_literal_braces_exports_the_same_text(tmp_path, chat_tokenizer) -> None:
    path = tmp_path / "braces.toml"
    path.write_text('system = "{{sys}} {content}\\n"\ndefault_system = "Use {{json}}."\n'
                    'user = "{{User}} {content}\\n"\nassistant = "{{bot}}:\\n"\n', "utf-8")  # fmt: skip
    template = load_template(str(path))
    folder = to_hf(build_model(CFG), tmp_path / "hf", chat_tokenizer.model_path,
                   chat_template=template)  # fmt: skip
    hf = transformers.AutoTokenizer.from_pretrained(folder)
    for messages in (TURNS, [SYSTEM, *TURNS[:3]]):
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert text == our_text(template, chat_tokenizer, messages, True)
        assert "{User} Name 3 animals.\n{bot}:\n" in text and "{{" not in text
