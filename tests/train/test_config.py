import json
import math
from pathlib import Path

import pytest

from llamaforge.errors import ConfigError
from llamaforge.model.config import PRESETS
from llamaforge.train.config import (
    DataSource,
    TrainConfig,
    apply_overrides,
    load_train_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAPER = {  # Touvron et al. 2023, §2.2 and Table 2: (preset, peak lr, training tokens)
    "llama-7b.toml": ("7B", 3e-4, 1.0e12),
    "llama-13b.toml": ("13B", 3e-4, 1.0e12),
    "llama-33b.toml": ("33B", 1.5e-4, 1.4e12),
    "llama-65b.toml": ("65B", 1.5e-4, 1.4e12),
}
TINY = {"tiny-1m.toml": "tiny-1M", "tiny-10m.toml": "tiny-10M", "demo.toml": "tiny-1M"}
TABLE1 = [67.0, 15.0, 4.5, 4.5, 4.5, 2.5, 2.0]  # sampling proportions, %

SMALL = """
[model]
preset = "tiny-1M"

[optim]
lr = 1e-3
warmup_steps = 10

[data]
seq_len = 64
batch_tokens = 1024
micro_batch_size = 4
sources = [{path = "tok/a", weight = 3}, {path = "tok/b"}]

[train]
max_steps = 50
precision = "fp32"
"""


def write(tmp_path: Path, text: str, name: str = "run.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_config_loads_with_the_papers_values():
    # data-*.toml configure `llamaforge data build` (tests/data/test_build_config.py).
    files = sorted(p.name for p in CONFIGS.glob("*.toml") if not p.name.startswith("data-"))
    assert set(PAPER) | set(TINY) <= set(files)
    for name in files:
        if "[finetune]" in (CONFIGS / name).read_text(encoding="utf-8"):
            continue  # demo-finetune.toml: a finetuning recipe (tests/finetune/test_configs.py)
        cfg = load_train_config(CONFIGS / name)
        assert cfg.optim.betas == (0.9, 0.95)
        assert cfg.optim.weight_decay == 0.1
        assert cfg.optim.grad_clip == 1.0
        assert cfg.optim.min_lr_ratio == 0.1
        assert cfg.accumulation_steps * cfg.micro_batch_tokens == cfg.data.batch_tokens
        if name in TINY:
            assert cfg.model.preset == TINY[name]
            assert 0 < cfg.optim.warmup_steps < cfg.max_steps <= 1000
            assert cfg.train.device == "auto"
            continue
        preset, lr, tokens = PAPER[name]
        assert cfg.model.preset == preset and cfg.model_config == PRESETS[preset]
        assert cfg.optim.lr == lr
        assert cfg.optim.warmup_steps == 2000
        assert cfg.data.batch_tokens == 4_194_304 == 2**22
        assert cfg.data.seq_len == 2048
        assert cfg.train.total_tokens == tokens and cfg.train.max_steps == 0
        assert cfg.max_steps == math.ceil(tokens / 2**22)
        assert cfg.train.precision == "bf16"
        assert cfg.train.activation_checkpointing == "selective"
        assert [s.weight for s in cfg.data.sources] == TABLE1


def test_small_config_fields_and_derived_quantities(tmp_path):
    cfg = load_train_config(write(tmp_path, SMALL))
    assert cfg.model_config.dim == PRESETS["tiny-1M"].dim
    assert cfg.data.sources == [DataSource("tok/a", 3.0), DataSource("tok/b", 1.0)]
    assert cfg.micro_batch_tokens == 256
    assert cfg.accumulation_steps == 4
    assert cfg.max_steps == 50
    assert cfg.optim.betas == (0.9, 0.95)  # default kept
    assert cfg.checkpoint_dir == Path("runs/llama/checkpoints")
    cfg2 = load_train_config(write(tmp_path, SMALL), ["parallel.dp=2", "checkpoint.dir=ck"])
    assert cfg2.accumulation_steps == 2 and cfg2.checkpoint_dir == Path("ck")


def test_max_steps_wins_over_total_tokens(tmp_path):
    text = SMALL.replace("max_steps = 50", "total_tokens = 10_000")
    cfg = load_train_config(write(tmp_path, text))
    assert cfg.max_steps == math.ceil(10_000 / 1024)  # 10 steps see >= 10k tokens
    cfg = load_train_config(write(tmp_path, text), ["train.max_steps=3"])
    assert cfg.max_steps == 3
    cfg = load_train_config(write(tmp_path, text), ["train.total_tokens=1e6"])
    assert cfg.train.total_tokens == 1_000_000 and isinstance(cfg.train.total_tokens, int)


def test_overrides_parse_toml_values_with_string_fallback(tmp_path):
    cfg = load_train_config(
        write(tmp_path, SMALL),
        [
            "optim.lr=3e-4",
            "optim.betas=[0.8, 0.9]",
            "model.preset=tiny-10M",
            "model.vocab_size=4000",
            "train.compile=true",
            "train.device=cpu",
            "checkpoint.resume=100",  # a string field keeps the raw text
            "data.sources=some/folder",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.model_config.dim == PRESETS["tiny-10M"].dim
    assert cfg.model_config.vocab_size == 4000
    assert cfg.train.compile is True and cfg.train.device == "cpu"
    assert cfg.checkpoint.resume == "100"
    assert cfg.data.sources == [DataSource("some/folder", 1.0)]
    raw = apply_overrides({"optim": {"lr": 1.0}}, ['data.sources=[{path="x", weight=2}]'])
    assert raw == {"optim": {"lr": 1.0}, "data": {"sources": [{"path": "x", "weight": 2}]}}


def test_to_dict_round_trips_through_json(tmp_path):
    cfg = load_train_config(write(tmp_path, SMALL), ["model.vocab_size=4000"])
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["model"] == {"preset": "tiny-1M", "vocab_size": 4000}
    back = TrainConfig.from_dict(data)
    assert back == cfg and back.optim.betas == (0.9, 0.95)
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


@pytest.mark.parametrize(
    ("overrides", "text", "expected"),
    [
        # unknown section / field
        ([], SMALL + "\n[optimizer]\nlr = 1.0\n", ["unknown section", "optimizer", "optim"]),
        (["optim.learning_rate=1"], None, ["optim.learning_rate", "lr", "warmup_steps"]),
        (["model.hidden=7"], None, ["model.hidden", "n_layers"]),
        (["train.nope.deep=1"], None, ["section.field=value"]),
        (["noequals"], None, ["section.field=value"]),
        (["foo.bar=1"], None, ["unknown section", "foo"]),
        # wrong type
        (["optim.lr=fast"], None, ["optim.lr", "a number", "'fast'"]),
        (["data.seq_len=1.5"], None, ["data.seq_len", "an integer"]),
        (["train.compile=1"], None, ["train.compile", "true or false"]),
        (["optim.betas=[0.9]"], None, ["optim.betas", "a list of 2 numbers"]),
        (["model.dim=wide"], None, ["model.dim", "an integer"]),
        (["data.sources=[{weight=1}]"], None, ["data.sources[0]", "path"]),
        # out of range
        (["optim.lr=-1"], None, ["optim.lr", "> 0", "-1"]),
        (["optim.betas=[0.9, 1.0]"], None, ["optim.betas[1]", "[0, 1)"]),
        (["optim.min_lr_ratio=2"], None, ["optim.min_lr_ratio", "[0, 1]"]),
        (["data.val_fraction=1"], None, ["data.val_fraction", "[0, 1)"]),
        (['data.sources=[{path="a", weight=0}]'], None, ["data.sources[0].weight", "> 0"]),
        (["train.max_steps=0", "train.total_tokens=0"], None, ["train.total_tokens", "max_steps"]),
        (["data.seq_len=512"], None, ["data.seq_len", "model.max_seq_len", "256"]),
        (["model.dim=130"], None, ["model.dim", "model.n_heads"]),
        # unknown preset
        (["model.preset=7b"], None, ["model.preset", "'7b'", "7B", "tiny-1M"]),
        # bad enum value
        (["train.precision=fp16"], None, ["train.precision", "'bf16'", "'fp32'", "'fp16'"]),
        (["train.activation_checkpointing=some"], None, ["'none'", "'full'", "'selective'"]),
        (["train.device=tpu"], None, ["train.device", "'auto'", "'cuda'"]),
        # derived quantity not an integer
        (["data.batch_tokens=1000"], None, ["data.batch_tokens", "multiple of", "256", "768"]),
        (["parallel.dp=3"], None, ["parallel.dp", "768", "1536"]),
        # a step that would never end (1e20 is how a typo of 1e6 looks)
        (
            ["data.batch_tokens=1e20"],
            None,
            ["data.batch_tokens", "micro-batches per optimizer", "1,048,576", "SIGTERM"],
        ),
        (["parallel.tp=3"], None, ["model.n_heads", "parallel.tp"]),
    ],
)
def test_config_errors_name_the_file_the_field_and_what_is_allowed(
    tmp_path, overrides, text, expected
):
    path = write(tmp_path, text or SMALL)
    with pytest.raises(ConfigError) as info:
        load_train_config(path, overrides)
    message = str(info.value)
    assert str(path) in message
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.toml")
    bad = write(tmp_path, "[optim\nlr = 1")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_train_config(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(ConfigError, match=r"\[optim\] must be a table"):
        load_train_config(write(tmp_path, "optim = 3\n"))


def test_direct_construction_is_validated():
    with pytest.raises(ConfigError, match="optim.warmup_steps"):
        TrainConfig.from_dict({"optim": {"warmup_steps": -1}})
    with pytest.raises(ConfigError, match="config: .*optim.eps"):
        TrainConfig.from_dict({"optim": {"eps": 0.0}})


def test_data_mixture_file_supplies_sources_and_tokenizer(tmp_path):
    """`data.mixture` reads the [[data.sources]] that `llamaforge data build` writes."""
    mixture = tmp_path / "mixture.toml"
    mixture.write_text(
        '[data]\nseed = 0\ntokenizer = "/m/tok.model"\n\n'
        '[[data.sources]]\npath = "/m/commoncrawl/tokens"\nweight = 67.0\n\n'
        '[[data.sources]]\npath = "/m/c4/tokens"\nweight = 15.0\n'
    )
    config = tmp_path / "train.toml"
    config.write_text(
        f'[model]\npreset = "tiny-1M"\n[data]\nseq_len = 256\nmixture = "{mixture}"\n'
    )
    cfg = load_train_config(config, ["train.max_steps=10"])
    assert [(s.path, s.weight) for s in cfg.data.sources] == [
        ("/m/commoncrawl/tokens", 67.0),
        ("/m/c4/tokens", 15.0),
    ]
    assert cfg.data.tokenizer == "/m/tok.model"
    assert load_train_config(config, ["data.tokenizer=/x.model"]).data.tokenizer == "/x.model"
    with pytest.raises(ConfigError, match="both mixture and sources"):
        load_train_config(config, ["data.sources=/a"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(config, [f"data.mixture={tmp_path / 'nope.toml'}"])
    broken = {  # each a clear error naming the mixture file, never a traceback
        "data = 5\n": "data must be a table",
        "[data]\nseed = " + "9" * 5000 + "\n": "not valid TOML.*digits",
        b"[data]\nseed = '\xff'\n": "not valid TOML",  # not UTF-8
    }
    for text, message in broken.items():
        if isinstance(text, bytes):
            mixture.write_bytes(text)
        else:
            mixture.write_text(text)
        with pytest.raises(ConfigError, match=f"mixture.toml.*{message}"):
            load_train_config(config)
    with pytest.raises(ConfigError, match="is a folder"):
        load_train_config(config, [f"data.mixture={tmp_path}"])


def test_integers_past_pythons_digit_limit_are_a_config_error(tmp_path):
    """Python refuses int() of over 4300 digits with ValueError, not TOMLDecodeError."""
    config = tmp_path / "train.toml"
    config.write_text('[model]\npreset = "tiny-1M"\n[optim]\nweight_decay = ' + "9" * 5000)
    with pytest.raises(ConfigError, match=r"train\.toml is not valid TOML.*digits"):
        load_train_config(config)
    config.write_text('[model]\npreset = "tiny-1M"\n')
    # As an override the text is kept as a string, and the field's check names it.
    with pytest.raises(ConfigError, match="optim.weight_decay"):
        load_train_config(config, ["optim.weight_decay=" + "9" * 5000])
