"""``convert`` never deletes what it did not write, and cleans only its own dead temporaries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llamaforge.cli import main
from llamaforge.formats import load_any, save_pretrained, to_hf, to_meta
from llamaforge.formats.atomic import MARKER_NAME, _start_time
from tests.formats.conftest import random_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def src(tmp_path) -> Path:
    return save_pretrained(random_model(), tmp_path / "src")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def assert_same_model(folder: Path) -> None:
    model, _ = load_any(folder)
    for name, tensor in random_model().state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_a_project_folder_survives_with_and_without_overwrite(src, tmp_path, capsys):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.txt").write_text("my notes")
    (project / "src" / "main.py").write_text("print('hi')")
    (project / "config.json").write_text('{"app": "settings"}')  # what made it look like a model
    before = snapshot(project)
    assert main(["convert", str(src), str(project)]) == 2
    assert "--overwrite" in one_line_error(capsys)
    assert snapshot(project) == before
    assert main(["convert", str(src), str(project), "--overwrite"]) == 0
    after = snapshot(project)
    assert after["notes.txt"] == b"my notes" and after["src/main.py"] == b"print('hi')"
    assert_same_model(project)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project", "src"]  # no temporaries


def test_a_training_checkpoint_keeps_its_optimizer_rng_and_manifest(src, tmp_path, capsys):
    ckpt = save_pretrained(random_model(seed=7), tmp_path / "step_00000100")
    for name in ("optimizer.pt", "rng.pt", "state.json", "manifest.json"):
        (ckpt / name).write_bytes(os.urandom(64))
    before = snapshot(ckpt)
    assert main(["convert", str(src), str(ckpt), "--to", "hf"]) == 2
    one_line_error(capsys)
    assert snapshot(ckpt) == before
    assert main(["convert", str(src), str(ckpt), "--to", "hf", "--overwrite"]) == 0
    after = snapshot(ckpt)
    for name in ("optimizer.pt", "rng.pt", "state.json", "manifest.json"):
        assert after[name] == before[name], name
    assert_same_model(ckpt)  # the HF files now decide: config.json is Hugging Face's


def test_overwrite_removes_stale_shards_it_would_otherwise_read(src, tmp_path):
    meta = to_meta(random_model(seed=3), tmp_path / "meta", shards=4)
    (meta / "README").write_text("keep me")
    assert (
        main(["convert", str(src), str(meta), "--to", "meta", "--shards", "2", "--overwrite"]) == 0
    )
    assert sorted(p.name for p in meta.glob("consolidated.*.pth")) == [
        "consolidated.00.pth", "consolidated.01.pth",
    ]  # fmt: skip
    assert (meta / "README").read_text() == "keep me"
    assert_same_model(meta)
    hf = to_hf(random_model(seed=3), tmp_path / "hf", shards=3)
    assert main(["convert", str(src), str(hf), "--to", "hf", "--overwrite"]) == 0
    assert not (hf / "model.safetensors.index.json").exists()
    assert_same_model(hf)


def test_overwrite_in_place_or_into_another_format_keeps_the_other_files(src, tmp_path):
    """Only this write's files are replaced: another format's files in DST, the source itself."""
    meta = to_meta(random_model(seed=3), tmp_path / "meta")
    before = snapshot(meta)
    assert main(["convert", str(meta), str(meta), "--to", "native", "--overwrite"]) == 0
    after = snapshot(meta)
    for name in ("params.json", "consolidated.00.pth"):
        assert after[name] == before[name], name
    for fmt in ("native", "meta"):  # the new native files, and the Meta checkpoint still whole
        model, _ = load_any(meta, fmt)
        for name, tensor in random_model(seed=3).state_dict().items():
            assert torch.equal(model.state_dict()[name], tensor), (fmt, name)


def test_a_failed_merge_puts_the_old_files_back(src, tmp_path, monkeypatch):
    from llamaforge.formats import atomic

    out = save_pretrained(random_model(seed=5), tmp_path / "out")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    real_replace = os.replace

    def failing(a, b):
        if Path(a).name == "model.safetensors" and Path(a).parent.name == "new":
            raise OSError("disk full")
        return real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(random_model(), out, overwrite=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


@pytest.mark.parametrize("target", ["file.txt", "file.txt/sub"])
def test_an_output_path_that_is_a_file_is_one_line(src, tmp_path, capsys, target):
    (tmp_path / "file.txt").write_text("precious")
    assert main(["convert", str(src), str(tmp_path / target)]) == 2
    assert "file.txt" in one_line_error(capsys)
    assert (tmp_path / "file.txt").read_text() == "precious"


def _marker(folder: Path, pid: int, **extra) -> None:
    import socket

    marker = {
        "kind": "llamaforge-convert-temporary", "name": folder.name, "pid": pid,
        "host": socket.gethostname(), "boot": Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        if Path("/proc/sys/kernel/random/boot_id").exists() else None,
        "start": _start_time(pid), "created": 0.0, **extra,
    }  # fmt: skip
    (folder / MARKER_NAME).write_text(json.dumps(marker))


KILL_AFTER_WEIGHTS = """
import os, signal, sys
import llamaforge.formats.native as native
real = native.save_safetensors
def save_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # mid-convert: weights written, folder not committed
native.save_safetensors = save_then_die
from llamaforge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_next_convert_removes_only_our_dead_temporaries(src, tmp_path):
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_WEIGHTS, "convert", str(src), str(out)],
        cwd=ROOT, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    (ours,) = tmp_path.glob(".out.tmp-*")
    assert (ours / "new" / "model.safetensors").stat().st_size > 100_000  # the full-size leak
    foreign = tmp_path / ".out.tmp-foreign"  # matches the pattern, not ours: no marker
    foreign.mkdir()
    (foreign / "data.bin").write_bytes(b"x" * 1000)
    copied = tmp_path / ".out.tmp-copied"  # our marker copied under another name
    copied.mkdir()
    (copied / MARKER_NAME).write_bytes((ours / MARKER_NAME).read_bytes())
    with subprocess.Popen(["sleep", "60"]) as live_writer:
        try:
            live = tmp_path / ".other.tmp-live"  # a convert that is still running
            live.mkdir()
            _marker(live, live_writer.pid)
            assert main(["convert", str(src), str(out)]) == 0
            assert not ours.exists()
            assert foreign.is_dir() and (foreign / "data.bin").read_bytes() == b"x" * 1000
            assert copied.is_dir() and live.is_dir()
        finally:
            live_writer.kill()
    assert_same_model(out)


def test_a_dead_writer_on_another_host_is_left_alone(src, tmp_path):
    elsewhere = tmp_path / ".out.tmp-nfs"
    elsewhere.mkdir()
    _marker(elsewhere, 2**22 + 12345, host="another-machine")  # pid unknown here
    dead = tmp_path / ".x.tmp-dead"
    dead.mkdir()
    finished = subprocess.run(["true"])  # its pid is now free
    assert finished.returncode == 0
    _marker(dead, 2**22 + 12345)  # no such pid on this host (above the usual pid_max)
    assert main(["convert", str(src), str(tmp_path / "out")]) == 0
    assert elsewhere.is_dir() and not dead.exists()
