"""``generate``, ``eval-loss`` and ``eval`` read native, Hugging Face and Meta folders alike."""

import json
import warnings

import pytest

from llamaforge.cli import main
from llamaforge.data.tokenize_folder import tokenize_to_shards
from llamaforge.formats import detect_format, save_any
from llamaforge.tokenizer import Tokenizer
from tests.eval.tasks.test_commonsense import BOOLQ, write_jsonl

FORMATS = ("native", "hf", "meta")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer, model_config):
    import torch

    from llamaforge.model import build_model

    torch.manual_seed(0)
    model = build_model(model_config).eval()
    root = tmp_path_factory.mktemp("formats")
    with warnings.catch_warnings():  # the fixture's tokenizer is NFKC: no tokenizer.json
        warnings.simplefilter("ignore")
        out = {
            fmt: save_any(model, root / fmt, fmt, tokenizer_path=tokenizer.path) for fmt in FORMATS
        }
    assert {fmt: detect_format(path) for fmt, path in out.items()} == {f: f for f in FORMATS}
    docs = ["the cat sat on the mat and ran far away from home."] * 20
    out["tokens"] = root / "tokens"
    tokenize_to_shards(docs, Tokenizer(tokenizer.path), out["tokens"], progress=False)
    write_jsonl(root / "data" / "boolq" / "validation.jsonl", [BOOLQ, dict(BOOLQ, label=0)])
    out["data"] = root / "data"
    return out


def _run(argv, capsys):
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_generate_reads_every_format(folders, capsys):
    printed = {
        fmt: _run(["generate", folders[fmt], "--prompt", "the cat", "--max-new-tokens", 8,
                   "--device", "cpu", "--dtype", "float32"], capsys)
        for fmt in FORMATS
    }  # fmt: skip
    assert printed["native"].startswith("the cat") and len(printed["native"]) > len("the cat\n")
    assert printed["hf"] == printed["meta"] == printed["native"]


def test_eval_loss_reads_every_format(folders, capsys):
    printed = {
        fmt: _run(["eval-loss", folders[fmt], folders["tokens"], "--seq-len", 16], capsys)
        for fmt in FORMATS
    }
    assert printed["native"].startswith("loss ")
    assert printed["hf"] == printed["meta"] == printed["native"]


def test_eval_reads_every_format(folders, tmp_path, capsys):
    results = {}
    for fmt in FORMATS:
        out = tmp_path / f"{fmt}.json"
        _run(["eval", folders[fmt], "--tasks", "boolq", "--data-dir", folders["data"],
              "--device", "cpu", "--dtype", "float32", "--no-progress", "--out", out], capsys)  # fmt: skip
        results[fmt] = json.loads(out.read_text())["results"]["boolq"]
        results[fmt].pop("seconds")
    assert results["native"]["n"] == 2
    assert results["hf"] == results["meta"] == results["native"]
