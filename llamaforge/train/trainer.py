"""The pretraining loop: the paper's recipe on one process, with exact resume.

Everything stateful that decides the next step is checkpointed: weights,
AdamW moments, the step (hence the learning rate), the data loader's
position, the RNG states and the non-finite-step counter. On CPU a run killed
at any moment and resumed from its last checkpoint therefore produces the
same loss curve as an uninterrupted run (tested with a real SIGKILL).

Under torchrun (``WORLD_SIZE > 1``) or with ``parallel.dp * parallel.tp > 1``
the same loop runs on a ("dp", "tp") mesh: FSDP2 x tensor/sequence
parallelism, sharded DCP checkpoints (see ``llamaforge.train.parallel``).
Data, output paths and memory are checked before anything is allocated
(``train.preflight``); ``run`` holds the run folder's lock (``train.run_lock``).
The model is built on the meta device and initialised from a generator seeded
with ``train.seed`` after it is placed (single process) or sharded
(distributed: no rank holds the full model), with the same draws in both, so
every layout starts from the same weights.
Only rank 0 writes logs, the summary and the progress bar. Logged throughput
is global (``tokens_per_s``) and per device (``tokens_per_s_per_device``);
``mfu`` is per device, with ``mfu_min``/``mfu_max`` over ranks so a straggler
shows.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from llamaforge.data.shards import atomic_write_text
from llamaforge.errors import CheckpointError, ConfigError, LlamaforgeError
from llamaforge.finetune.checkpointing import check_resume_base, checkpoint_extras
from llamaforge.model import build_model
from llamaforge.train.activation_checkpoint import apply_activation_checkpointing
from llamaforge.train.checkpoint import CheckpointManager
from llamaforge.train.config import TrainConfig
from llamaforge.train.config_change import check_resume_config
from llamaforge.train.fresh_run import earlier_run, move_earlier_run
from llamaforge.train.metrics import MetricsLogger, TrainResult, detect_peak_flops, mfu
from llamaforge.train.optim import apply_lr, build_optimizer
from llamaforge.train.parallel.mesh import wants_distributed
from llamaforge.train.parallel.meta_init import init_generator
from llamaforge.train.preflight import preflight
from llamaforge.train.run_lock import RunLock
from llamaforge.train.sources import (
    apply_lora_if_enabled,
    build_data,
    load_start_weights,
    start_point,
    write_data_report,
)
from llamaforge.train.step import evaluate_loss, train_step


class TrainingDiverged(LlamaforgeError):
    """Too many consecutive non-finite steps; the last good checkpoint was kept."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LlamaforgeError("train.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


# Called with the live model; returns metrics logged under split "tasks" (see
# llamaforge.eval.during_training for the benchmark hook llamaforge train builds).
ModelHook = Callable[[torch.nn.Module], dict[str, float]]


class Trainer:
    def __init__(
        self, cfg: TrainConfig, progress: bool = True, hooks: Sequence[ModelHook] = ()
    ) -> None:
        self.cfg = cfg
        self.hooks = list(hooks)
        self.dist = None
        if wants_distributed(cfg.parallel.dp, cfg.parallel.tp):
            from llamaforge.train.parallel.runtime import DistributedRuntime

            self.dist = DistributedRuntime(cfg)
        self.is_main = self.dist is None or self.dist.is_main
        self.progress = progress and self.is_main
        self.device = self.dist.device if self.dist else resolve_device(cfg.train.device)
        self.world_size = self.dist.ctx.world_size if self.dist else 1
        self.dp = self.dist.ctx.dp if self.dist else 1
        self.run_dir = Path(cfg.train.run_dir)
        self.max_steps = cfg.max_steps
        self._stop_signal: str | None = None

        torch.manual_seed(cfg.train.seed)
        start = start_point(cfg)  # finetuning: the model and weights of finetune.init
        self.model_config = start.model_config
        if start.state is not None:
            try:
                cfg.validate(self.model_config)
            except ConfigError as error:
                raise ConfigError(f"finetune.init {cfg.finetune.init}: {error}") from None
        rank = self.dist.ctx.dp_rank if self.dist else 0
        plan = build_data(cfg, start, rank, self.dp)  # token folders, or finetuning examples
        self.loader, self.val_loader, self.data_report = plan.loader, plan.val_loader, plan.report
        self.tokenizer_source = cfg.data.tokenizer or start.tokenizer
        # Finetuning: the chat template in config.json; LoRA: adapter-only checkpoints.
        self.extras = checkpoint_extras(cfg, start, plan.template, self.dist is not None)
        if cfg.finetune.enabled and cfg.finetune.epochs > 0 and cfg.train.max_steps == 0:
            self.max_steps = self.loader.steps_for_epochs(cfg.finetune.epochs)
        if cfg.finetune.enabled and cfg.finetune.warmup_ratio > 0:
            cfg.optim.warmup_steps = math.ceil(round(cfg.finetune.warmup_ratio * self.max_steps, 9))
        if self.loader.vocab_size > self.model_config.vocab_size:
            raise ConfigError(
                f"token data has vocab_size {self.loader.vocab_size} but model.vocab_size is "
                f"{self.model_config.vocab_size}; set model.vocab_size={self.loader.vocab_size}"
            )
        # Everything is checked before the model is allocated (preflight) or the folder locked.
        any_rank = self.dist.any_rank if self.dist else None
        preflight(
            cfg, self.device, self.world_size, self.is_main, any_rank, self.model_config,
            steps=self.max_steps,
        )  # fmt: skip
        self.run_lock = RunLock([self.run_dir, cfg.checkpoint_dir], self.is_main, any_rank)
        self.run_lock.probe()
        if problem := earlier_run(cfg):  # resume = "never" over another run: refused now
            raise ConfigError(problem)
        # Built on meta, then materialised: the full model in one process, only this
        # rank's shards under a process group. Both draw the same initial weights.
        self.model = build_model(self.model_config, device="meta")
        self.params = self.model.num_params()
        lora = apply_lora_if_enabled(self.model, cfg)
        if self.dist:  # bf16 then comes from FSDP's mixed-precision policy, not autocast
            self.optimizer = self.dist.prepare(self.model)
            if lora:
                from llamaforge.finetune.lora import reset_lora_parameters

                reset_lora_parameters(self.model, init_generator(self.device, cfg.train.seed))
            if start.state is not None:
                load_start_weights(self.model, start.state, distributed=True)
            self.forward_model = self.model
            self.step_precision = "fp32"
        else:
            self.model.to_empty(device=self.device)
            self.model.init_weights(init_generator(self.device, cfg.train.seed))
            if lora:
                from llamaforge.finetune.lora import reset_lora_parameters

                reset_lora_parameters(self.model, init_generator(self.device, cfg.train.seed))
            if start.state is not None:
                load_start_weights(self.model, start.state, distributed=False)
            self.optimizer = build_optimizer(self.model, cfg.optim)
            mode = cfg.train.activation_checkpointing
            self.model = apply_activation_checkpointing(self.model, mode)
            self.forward_model = (
                torch.compile(self.model, backend=cfg.train.compile_backend)
                if cfg.train.compile
                else self.model
            )
            self.step_precision = cfg.train.precision

        self.checkpoints = (
            self.dist.checkpoint_manager()
            if self.dist
            else CheckpointManager(cfg.checkpoint_dir, keep_last=cfg.checkpoint.keep_last)
        )
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
            extra_config=self.extras.config, trainable_only=self.extras.adapters_only,
        )  # fmt: skip

    def _tokenizer_path(self) -> str | None:
        path = self.tokenizer_source
        return path if path and os.path.isfile(path) else None

    def resume(self) -> Path | None:
        choice = self.cfg.checkpoint.resume
        if choice == "never":  # under the lock: refuse, or move the earlier run aside
            self.checkpoints._agree(lambda: move_earlier_run(self.cfg))
            return None
        auto = choice == "auto"
        damaged_ok = self.cfg.checkpoint.restart_over_damaged
        path = self.checkpoints.resume_point(damaged_ok) if auto else Path(choice)
        if path is None:  # step 0: what is in the folder already is moved aside, never overwritten
            self.checkpoints._agree(lambda: move_earlier_run(self.cfg, outputs_only=True))
            return None
        if not path.is_dir():
            raise CheckpointError(f"checkpoint.resume = {choice!r}: no checkpoint folder there")
        check_resume_config(self.cfg, path, warn=self.is_main)
        check_resume_base(path, self.extras)  # adapters: only on the base they were trained on
        try:
            self._restore(path, verify=not auto)
        except LlamaforgeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            # The manifest's checksums match (a file rewritten with its checksum, or a bug
            # of an old version): its contents still do not make a training state.
            raise CheckpointError(
                f"{path}: its training state cannot be restored ({type(error).__name__}: "
                f"{str(error)[:200]}); move that checkpoint folder away to resume from an "
                "earlier one"
            ) from None
        return path

    def _restore(self, path: Path, verify: bool) -> None:
        state = self.checkpoints.load(path, self.model, self.optimizer, verify=verify)
        self.step = int(state["step"])
        if self.step < 0:
            raise ValueError(f"step {self.step} < 0")
        self.tokens = int(state["tokens"])
        self.loader.load_state_dict(state["loader"])
        self.consecutive_nonfinite = int(state["consecutive_nonfinite"])
        self.skipped_steps = int(state["skipped_steps"])
        self.wall_time_s = float(state["wall_time_s"])
        self.initial_val_loss = state.get("initial_val_loss")
        self.last_val_loss = state.get("last_val_loss")
        self.last_train_loss = float(state.get("last_train_loss", float("nan")))

    # ---- the loop ----------------------------------------------------------
    def validate(self) -> float | None:
        if self.val_loader is None:
            return None
        loss, count = evaluate_loss(self.forward_model, self.val_loader, self.step_precision)
        return self.dist.mean_eval_loss(loss, count) if self.dist else loss

    def _request_stop(self, signum: int, _frame: Any) -> None:
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self._stop_signal = signal.Signals(signum).name

    def run(self) -> TrainResult:
        """Train to the end (or a stop signal), holding the run folder's lock throughout."""
        with self.run_lock:
            return self._run_locked()

    def _run_locked(self) -> TrainResult:
        self._summary: TrainResult | None = None
        cfg = self.cfg
        resumed_from = self.resume()
        if self.is_main:
            write_data_report(self.run_dir, self.data_report)
        handlers = {
            s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)
        }
        logger = MetricsLogger(
            self.run_dir, tensorboard=cfg.log.tensorboard and self.is_main,
            jsonl=cfg.log.jsonl and self.is_main, start_step=self.step if resumed_from else None,
        )  # fmt: skip
        try:
            self._loop(logger, resumed_from)
        finally:
            logger.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return self._summary or self._result()

    def _loop(self, logger: MetricsLogger, resumed_from: Path | None) -> None:
        cfg = self.cfg
        if self.step == 0 and self.initial_val_loss is None:
            self.initial_val_loss = self.last_val_loss = self.validate()
            if self.initial_val_loss is not None:
                logger.log(0, self._val_metrics(self.initial_val_loss), split="val")
            self._run_hooks(logger)
        accumulation = cfg.accumulation_steps
        last_saved = self.step if resumed_from else -1
        with tqdm(
            total=self.max_steps, initial=self.step, disable=not self.progress,
            desc=f"train {self.params / 1e6:.1f}M", unit="step", dynamic_ncols=True,
        ) as bar:  # fmt: skip
            self.model.train()
            while self.step < self.max_steps and not self._should_stop():
                start = time.perf_counter()
                lr = apply_lr(self.optimizer, self.step, cfg.optim, self.max_steps)
                batches = (self.loader.next_batch() for _ in range(accumulation))
                result = train_step(
                    self.forward_model, self.optimizer, batches, accumulation, cfg.optim.grad_clip,
                    self.step_precision, masked=self._masked, dp=self.dp, **self._step_hooks(),
                )  # fmt: skip
                elapsed = time.perf_counter() - start
                self.wall_time_s += elapsed
                self.step += 1
                step_tokens = result.tokens * self.dp  # all data-parallel ranks
                self.tokens += step_tokens
                if result.skipped:
                    self.skipped_steps += 1
                    self.consecutive_nonfinite += 1
                else:
                    self.consecutive_nonfinite = 0
                    self.last_train_loss = result.loss
                tokens_per_s = step_tokens / elapsed
                metrics = {
                    "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
                    "tokens": self.tokens, "tokens_per_s": tokens_per_s,
                    "mfu": mfu(tokens_per_s, self.flops_per_token, self.peak_flops,
                               self.world_size),
                    "skipped_steps": self.skipped_steps,
                }  # fmt: skip
                if self.step % cfg.log.every_steps == 0 or self.step == self.max_steps:
                    logger.log(self.step, self._per_device(metrics))
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
                bench_every = cfg.benchmarks.every_steps
                if (bench_every and self.step % bench_every == 0) or self.step == self.max_steps:
                    self._run_hooks(logger)
                every = cfg.checkpoint.every_steps
                if (every and self.step % every == 0) or self.step == self.max_steps:
                    self.save_checkpoint()
                    last_saved = self.step
        if self._stop_signal is not None and last_saved != self.step:
            path = self.save_checkpoint()
            if self.is_main:
                tqdm.write(f"{self._stop_signal}: saved {path}; resume with the same command")
        self._write_summary()

    def _run_hooks(self, logger: MetricsLogger) -> None:
        for hook in self.hooks:  # every rank runs them: sharded modules need all ranks
            logger.log(self.step, {**hook(self.model), "tokens": self.tokens}, split="tasks")

    def _should_stop(self) -> bool:
        if self.dist:
            self._stop_signal = self.dist.agree_stop(self._stop_signal)
        return self._stop_signal is not None

    @property
    def _masked(self) -> bool:  # finetuning batches: the global token-mean loss
        return bool(getattr(self.loader, "masked", False))

    def _step_hooks(self) -> dict[str, Any]:
        if self.dist is None:
            return {}
        hooks = {"clip_fn": self.dist.clip_fn, "loss_reduce": self.dist.loss_reduce}
        if self._masked:
            hooks["count_reduce"] = self.dist.count_reduce
        return hooks

    def _per_device(self, metrics: dict[str, Any]) -> dict[str, Any]:
        per_device = metrics["tokens_per_s"] / self.world_size
        out = {**metrics, "tokens_per_s_per_device": per_device}
        if self.dist:  # every rank's own MFU, so a straggler shows
            out.update(self.dist.mfu_spread(mfu(per_device, self.flops_per_token, self.peak_flops)))
        return out

    def close(self) -> None:
        """Leave the process group (distributed runs); the model stays usable on this rank."""
        if self.dist:
            self.dist.close()

    def _val_metrics(self, loss: float) -> dict[str, float]:
        return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": self.tokens}

    def _result(self) -> TrainResult:
        throughput = self.tokens / self.wall_time_s if self.wall_time_s > 0 else 0.0
        latest = self.checkpoints.latest()
        return TrainResult(
            steps=self.step, tokens=self.tokens, params=self.params,
            train_loss=self.last_train_loss, val_loss=self.last_val_loss,
            initial_val_loss=self.initial_val_loss, tokens_per_s=throughput,
            mfu=mfu(throughput, self.flops_per_token, self.peak_flops, self.world_size),
            wall_time_s=self.wall_time_s, device=str(self.device), n_devices=self.world_size,
            skipped_steps=self.skipped_steps, stopped_by=self._stop_signal or "finished",
            checkpoint=str(latest) if latest else "", peak_flops=self.peak_flops,
        )  # fmt: skip

    def _write_summary(self) -> None:
        result = self._summary = self._result()  # every rank: finding the latest is collective
        if not self.is_main:
            return
        atomic_write_text(self.run_dir / "summary.json", json.dumps(result.to_dict(), indent=2))
