import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from llamaforge.model import get_preset
from llamaforge.train import metrics
from llamaforge.train.metrics import (
    MetricsLogger,
    detect_peak_flops,
    mfu,
    model_flops_per_token,
)


def test_model_flops_per_token_is_6n_plus_attention():
    cfg = get_preset("7B")
    d, layers, hidden = 4096, 32, 11008
    non_embedding = layers * (4 * d * d + 3 * d * hidden + 2 * d) + d + 32000 * d
    expected = 6 * non_embedding + 6 * layers * 2048 * d
    assert model_flops_per_token(cfg, 2048) == pytest.approx(expected)
    assert model_flops_per_token(cfg, 4096) > model_flops_per_token(cfg, 2048)


def test_mfu():
    # 7B at 3000 tokens/s per GPU on a 312 TFLOP/s A100 (the paper's setting).
    flops = model_flops_per_token(get_preset("7B"), 2048)
    assert mfu(3000, flops, 312e12) == pytest.approx(3000 * flops / 312e12)
    assert mfu(8 * 3000, flops, 312e12, n_devices=8) == pytest.approx(mfu(3000, flops, 312e12))
    assert math.isnan(mfu(3000, flops, 0.0))


@pytest.mark.parametrize(
    ("name", "dtype", "tf32", "expected"),
    [
        ("NVIDIA A100-SXM4-80GB", torch.bfloat16, False, 312e12),
        ("NVIDIA H100 80GB HBM3", torch.bfloat16, False, 989e12),
        ("NVIDIA H100 PCIe", torch.bfloat16, False, 756e12),
        ("NVIDIA H200", torch.bfloat16, False, 989e12),
        ("NVIDIA A100-SXM4-80GB", torch.float32, False, 19.5e12),  # CUDA cores
        ("NVIDIA A100-SXM4-80GB", torch.float32, True, 156e12),  # TF32 tensor cores
    ],
)
def test_gpu_peaks_come_from_the_table(monkeypatch, name, dtype, tf32, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(metrics, "_tf32_enabled", lambda: tf32)
    metrics._detect.cache_clear()
    try:
        assert detect_peak_flops("cuda:0", dtype) == expected
    finally:
        metrics._detect.cache_clear()


def test_cpu_peak_is_a_measured_and_cached_matmul_rate():
    first = detect_peak_flops("cpu", torch.float32)
    assert 1e8 < first < 1e14  # between a slow laptop core and a large server
    assert detect_peak_flops(torch.device("cpu"), torch.float32) == first  # cached


def test_jsonl_and_tensorboard_read_back(tmp_path):
    with MetricsLogger(tmp_path / "run") as logger:
        logger.log(1, {"loss": 4.5, "lr": 1e-4, "tokens": 1024})
        logger.log(2, {"loss": torch.tensor(4.25), "note": "text is kept in JSONL only"})
        logger.log(2, {"loss": 4.0}, split="val")
        # Readable while the logger is still open (flushed per call).
        assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
        with pytest.raises(ValueError, match="reserved"):
            logger.log(3, {"step": 1.0})
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [(r["step"], r["split"]) for r in rows] == [(1, "train"), (2, "train"), (2, "val")]
    assert rows[0]["tokens"] == 1024 and rows[1]["loss"] == 4.25 and rows[2]["loss"] == 4.0
    assert rows[1]["note"].startswith("text") and rows[0]["timestamp"] <= rows[2]["timestamp"]

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"train/loss", "train/lr", "train/tokens", "val/loss"}
    train_loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert train_loss == [(1, 4.5), (2, 4.25)]
    assert [(e.step, e.value) for e in events.Scalars("val/loss")] == [(2, 4.0)]


def test_appending_after_a_cut_line_and_nan_values(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "split": "train", "loss": 5.0}\n{"step": 2, "spl', "utf-8")
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(2, {"loss": float("nan"), "grad_norm": float("inf")})
    assert not (tmp_path / "tensorboard").exists()
    lines = path.read_text("utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["loss"] == 5.0
    last = json.loads(lines[2])
    assert math.isnan(last["loss"]) and last["grad_norm"] == math.inf


def test_jsonl_can_be_turned_off(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=True, jsonl=False)
    logger.log(5, {"loss": 1.0})
    logger.close()
    logger.close()  # idempotent
    assert not (tmp_path / "metrics.jsonl").exists()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [5]


def test_resumed_logger_hides_events_after_the_resume_step(tmp_path):
    with MetricsLogger(tmp_path, jsonl=False) as logger:
        for step in range(1, 6):
            logger.log(step, {"loss": float(step)})
    with MetricsLogger(tmp_path, jsonl=False, start_step=3) as logger:
        logger.log(3, {"loss": 30.0})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]
