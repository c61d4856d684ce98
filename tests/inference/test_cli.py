import pytest

from llamaforge.cli import main
from llamaforge.formats.native import save_pretrained
from llamaforge.inference import SamplingConfig, generate
from llamaforge.inference.cli import unescape
from llamaforge.inference.terminal import escape_controls

PROMPTS = ["a dog sat on the mat", "the cat"]


@pytest.fixture
def checkpoint(tmp_path, model, tokenizer):
    return save_pretrained(model, tmp_path / "ckpt", tokenizer_path=tokenizer.path)


def test_generate_streams_the_same_text_as_the_api(checkpoint, model, tokenizer, capsys):
    rc = main(["generate", str(checkpoint), "--prompt", PROMPTS[0], "--max-new-tokens", "12"])
    expected = generate(model, tokenizer, PROMPTS[:1], SamplingConfig(max_new_tokens=12))[0]
    assert rc == 0
    # the random model spells control bytes (\x08 here); stdout shows them escaped
    assert capsys.readouterr().out == PROMPTS[0] + escape_controls(expected) + "\n"


def test_several_prompts_sampling_and_stop_without_echo(checkpoint, model, tokenizer, capsys):
    cfg = SamplingConfig(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=3)
    # The CLI completes prompts one at a time, each with a fresh seeded generator.
    free = [generate(model, tokenizer, [p], cfg)[0] for p in PROMPTS]
    stop = free[1][4:6]
    assert "\\" not in stop
    argv = ["generate", str(checkpoint), "--no-echo", "--max-new-tokens", "16"]
    argv += ["--temperature", "1", "--top-p", "0.9", "--seed", "3", f"--stop={stop}"]
    for prompt in PROMPTS:
        argv += ["--prompt", prompt]
    assert main(argv) == 0
    cut = [t[: t.index(stop)] if stop in t else t for t in free]
    assert capsys.readouterr().out == escape_controls(cut[0] + "\n\n" + cut[1] + "\n")


def test_output_is_flushed_piece_by_piece(checkpoint, monkeypatch):
    events = []

    class Recorder:
        def write(self, text):
            events.append("write")

        def flush(self):
            events.append("flush")

    monkeypatch.setattr("sys.stdout", Recorder())
    main(["generate", str(checkpoint), "--prompt", "the", "--max-new-tokens", "8", "--no-echo"])
    writes = events.count("write")
    assert writes > 2
    assert all(events[i + 1] == "flush" for i, e in enumerate(events) if e == "write")


def test_missing_folder_and_bad_settings_are_reported_without_traceback(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["generate", str(tmp_path), "--prompt", "x", "--top-p", "0"]) == 2
    assert "sampling.top_p" in capsys.readouterr().err
    assert main(["generate", str(tmp_path), "--prompt", "x", "--temperature", "inf"]) == 2
    err = capsys.readouterr().err
    assert "sampling.temperature must be a finite number" in err and err.count("\n") == 1


def test_vanishing_temperature_prints_the_greedy_text(checkpoint, capsys):
    argv = ["generate", str(checkpoint), "--prompt", "the", "--max-new-tokens", "10", "--seed", "1"]
    assert main(argv) == 0
    greedy = capsys.readouterr().out
    assert main([*argv, "--temperature", "1e-45"]) == 0
    assert capsys.readouterr().out == greedy


def test_unescape_decodes_only_newline_tab_and_backslash():
    assert unescape(r"a\nb\tc\\d") == "a\nb\tc\\d"
    assert unescape(r"caf\é \x41") == r"caf\é \x41"
