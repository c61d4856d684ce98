"""The pretraining loop: the paper's recipe on one process, with exact resume.

Everything stateful that decides the next step is checkpointed: weights,
AdamW moments, the step (hence the learning rate), the data loader's
position, the RNG states and the non-finite-step counter. On CPU a run killed
at any moment and resumed from its last checkpoint therefore produces the
same loss curve as an uninterrupted run (tested with a real SIGKILL).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from llamaforge.data.loader import TokenLoader
from llamaforge.errors import CheckpointError, LlamaforgeError
from llamaforge.model import build_model
from llamaforge.train.activation_checkpoint import apply_activation_checkpointing
from llamaforge.train.checkpoint import CheckpointManager
from llamaforge.train.config import TrainConfig
from llamaforge.train.metrics import MetricsLogger, detect_peak_flops, mfu
from llamaforge.train.optim import apply_lr, build_optimizer
from llamaforge.train.step import evaluate_loss, train_step


class TrainingDiverged(LlamaforgeError):
    """Too many consecutive non-finite steps; the last good checkpoint was kept."""


@dataclass
class TrainResult:
    steps: int
    tokens: int
    params: int
    train_loss: float
    val_loss: float | None
    initial_val_loss: float | None
    tokens_per_s: float
    mfu: float
    wall_time_s: float  # training time summed over all sessions of the run
    device: str
    n_devices: int
    skipped_steps: int
    stopped_by: str  # "finished", "SIGINT" or "SIGTERM"
    checkpoint: str
    peak_flops: float

    @property
    def train_ppl(self) -> float:
        return math.exp(min(self.train_loss, 50.0))

    @property
    def val_ppl(self) -> float | None:
        return None if self.val_loss is None else math.exp(min(self.val_loss, 50.0))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_ppl": self.train_ppl, "val_ppl": self.val_ppl}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LlamaforgeError("train.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


class Trainer:
    def __init__(self, cfg: TrainConfig, progress: bool = True) -> None:
        self.cfg = cfg
        self.progress = progress
        self.device = resolve_device(cfg.train.device)
        self.run_dir = Path(cfg.train.run_dir)
        self.max_steps = cfg.max_steps
        self._stop_signal: str | None = None

        torch.manual_seed(cfg.train.seed)
        self.model_config = cfg.model_config
        self.model = build_model(self.model_config, device=self.device)
        self.params = self.model.num_params()
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.model = apply_activation_checkpointing(self.model, cfg.train.activation_checkpointing)
        self.forward_model = torch.compile(self.model) if cfg.train.compile else self.model

        sources = [(s.path, s.weight) for s in cfg.data.sources]
        if not sources:
            raise LlamaforgeError("data.sources is empty: give at least one token folder")
        common = dict(seq_len=cfg.data.seq_len, batch_size=cfg.data.micro_batch_size,
                      val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)  # fmt: skip
        self.loader = TokenLoader(sources, split="train", **common)
        self.val_loader = (
            TokenLoader(sources, split="val", max_batches=cfg.train.val_batches, **common)
            if cfg.data.val_fraction > 0
            else None
        )
        if self.loader.vocab_size > self.model_config.vocab_size:
            raise LlamaforgeError(
                f"token data has vocab_size {self.loader.vocab_size} but model.vocab_size is "
                f"{self.model_config.vocab_size}; set model.vocab_size={self.loader.vocab_size}"
            )
        self.checkpoints = CheckpointManager(cfg.checkpoint_dir, keep_last=cfg.checkpoint.keep_last)
        peak = cfg.log.peak_flops_per_device or detect_peak_flops(
            self.device, torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32
        )
        self.peak_flops = peak
        self.flops_per_token = self.model_config.flops_per_token(cfg.data.seq_len)

        # Run state (what a checkpoint restores).
        self.step = 0
        self.tokens = 0
        self.consecutive_nonfinite = 0
        self.skipped_steps = 0
        self.wall_time_s = 0.0
        self.initial_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.last_train_loss = float("nan")

    # ---- checkpoints -------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "loader": self.loader.state_dict(),
            "consecutive_nonfinite": self.consecutive_nonfinite,
            "skipped_steps": self.skipped_steps,
            "wall_time_s": self.wall_time_s,
            "initial_val_loss": self.initial_val_loss,
            "last_val_loss": self.last_val_loss,
            "last_train_loss": self.last_train_loss,
        }

    def save_checkpoint(self) -> Path:
        return self.checkpoints.save(
            self.step, self.model, self.optimizer,
            model_config=self.model_config.to_dict(), train_config=self.cfg.to_dict(),
            state=self._state(), tokenizer_path=self._tokenizer_path(),
        )  # fmt: skip

    def _tokenizer_path(self) -> str | None:
        path = self.cfg.data.tokenizer
        return path if path and os.path.isfile(path) else None

    def resume(self) -> Path | None:
        choice = self.cfg.checkpoint.resume
        if choice == "never":
            return None
        path = self.checkpoints.latest() if choice == "auto" else Path(choice)
        if path is None:
            return None
        if not path.is_dir():
            raise CheckpointError(f"checkpoint.resume = {choice!r}: no checkpoint folder there")
        state = self.checkpoints.load(path, self.model, self.optimizer)
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.loader.load_state_dict(state["loader"])
        self.consecutive_nonfinite = int(state["consecutive_nonfinite"])
        self.skipped_steps = int(state["skipped_steps"])
        self.wall_time_s = float(state["wall_time_s"])
        self.initial_val_loss = state.get("initial_val_loss")
        self.last_val_loss = state.get("last_val_loss")
        self.last_train_loss = float(state.get("last_train_loss", float("nan")))
        return path

    # ---- the loop ----------------------------------------------------------
    def validate(self) -> float | None:
        if self.val_loader is None:
            return None
        loss, _ = evaluate_loss(self.forward_model, self.val_loader, self.cfg.train.precision)
        return loss

    def _request_stop(self, signum: int, _frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self._stop_signal = signal.Signals(signum).name

    def run(self) -> TrainResult:
        cfg = self.cfg
        resumed_from = self.resume()
        handlers = {
            s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)
        }
        logger = MetricsLogger(
            self.run_dir, tensorboard=cfg.log.tensorboard, jsonl=cfg.log.jsonl,
            start_step=self.step if resumed_from else None,
        )  # fmt: skip
        try:
            self._loop(logger, resumed_from)
        finally:
            logger.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return self._result()

    def _loop(self, logger: MetricsLogger, resumed_from: Path | None) -> None:
        cfg = self.cfg
        if self.step == 0 and self.initial_val_loss is None:
            self.initial_val_loss = self.last_val_loss = self.validate()
            if self.initial_val_loss is not None:
                logger.log(0, self._val_metrics(self.initial_val_loss), split="val")
        accumulation = cfg.accumulation_steps
        last_saved = self.step if resumed_from else -1
        with tqdm(
            total=self.max_steps, initial=self.step, disable=not self.progress,
            desc=f"train {self.params / 1e6:.1f}M", unit="step", dynamic_ncols=True,
        ) as bar:  # fmt: skip
            self.model.train()
            while self.step < self.max_steps and self._stop_signal is None:
                start = time.perf_counter()
                lr = apply_lr(self.optimizer, self.step, cfg.optim, self.max_steps)
                batches = (self.loader.next_batch() for _ in range(accumulation))
                result = train_step(
                    self.forward_model, self.optimizer, batches, accumulation, cfg.optim.grad_clip,
                    cfg.train.precision,
                )  # fmt: skip
                elapsed = time.perf_counter() - start
                self.wall_time_s += elapsed
                self.step += 1
                self.tokens += result.tokens
                if result.skipped:
                    self.skipped_steps += 1
                    self.consecutive_nonfinite += 1
                else:
                    self.consecutive_nonfinite = 0
                    self.last_train_loss = result.loss
                tokens_per_s = result.tokens / elapsed
                metrics = {
                    "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
                    "tokens": self.tokens, "tokens_per_s": tokens_per_s,
                    "mfu": mfu(tokens_per_s, self.flops_per_token, self.peak_flops),
                    "skipped_steps": self.skipped_steps,
                }  # fmt: skip
                if self.step % cfg.log.every_steps == 0 or self.step == self.max_steps:
                    logger.log(self.step, metrics)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{result.loss:.3f}", lr=f"{lr:.1e}", tok_s=f"{tokens_per_s:,.0f}"
                )
                if self.consecutive_nonfinite >= cfg.train.max_nonfinite_steps:
                    path = self.save_checkpoint()
                    raise TrainingDiverged(
                        f"{self.consecutive_nonfinite} consecutive steps had a non-finite loss or "
                        f"gradient (last at step {self.step}); every one was skipped, so {path} "
                        "holds the last good weights. Lower optim.lr or check the data, then resume."
                    )
                val_every = cfg.train.val_every_steps
                if (val_every and self.step % val_every == 0) or self.step == self.max_steps:
                    self.last_val_loss = self.validate()
                    if self.last_val_loss is not None:
                        logger.log(self.step, self._val_metrics(self.last_val_loss), split="val")
                every = cfg.checkpoint.every_steps
                if (every and self.step % every == 0) or self.step == self.max_steps:
                    self.save_checkpoint()
                    last_saved = self.step
        if self._stop_signal is not None and last_saved != self.step:
            path = self.save_checkpoint()
            tqdm.write(f"{self._stop_signal}: saved {path}; resume with the same command")
        self._write_summary()

    def _val_metrics(self, loss: float) -> dict[str, float]:
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": self.tokens}

    def _result(self) -> TrainResult:
        throughput = self.tokens / self.wall_time_s if self.wall_time_s > 0 else 0.0
        latest = self.checkpoints.latest()
        return TrainResult(
            steps=self.step, tokens=self.tokens, params=self.params,
            train_loss=self.last_train_loss, val_loss=self.last_val_loss,
            initial_val_loss=self.initial_val_loss, tokens_per_s=throughput,
            mfu=mfu(throughput, self.flops_per_token, self.peak_flops),
            wall_time_s=self.wall_time_s, device=str(self.device), n_devices=1,
            skipped_steps=self.skipped_steps, stopped_by=self._stop_signal or "finished",
            checkpoint=str(latest) if latest else "", peak_flops=self.peak_flops,
        )  # fmt: skip

    def _write_summary(self) -> None:
        path = self.run_dir / "summary.json"
        tmp = path.with_name(".summary.json.tmp")
        tmp.write_text(json.dumps(self._result().to_dict(), indent=2), encoding="utf-8")
        os.replace(tmp, path)
