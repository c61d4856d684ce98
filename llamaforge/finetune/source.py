"""Finetuning as a data source for the one trainer: examples to resumable batches.

Two layouts (``finetune.packing``):

* **packed** (default): examples, in a seeded random order per epoch, are
  placed greedily into rows of exactly ``seq_len`` positions; an example that
  does not fit starts the next row (no example is split). Each batch carries
  ``documents`` ids, so attention is block-diagonal and rotary positions
  restart per example (see ``Transformer.forward``): every example's loss is
  the one it would have alone. The tail of a row is padding (its own
  document, targets ignored).
* **unpacked**: one example per row; within windows of 64 global batches of
  the epoch's order, examples are sorted by length and cut into batches,
  whose order is then shuffled (length-grouped batching, as HF
  ``group_by_length``). Rows are right-padded to the longest in the batch
  (rounded up to ``pad_multiple``), so plain causal attention needs no mask.

Both layouts are exact (the benchmark checks that every example's response
loss agrees to ~1e-8). Packed is the default: it needs about half the steps
per epoch and measured faster per real token in ``benchmarks/finetune_packing.py``
with steps interleaved on the shared development CPU, though runs there are
noisy enough to reorder the two; rerun it on your hardware. The mask is SDPA's
boolean ``attn_mask``: ``flex_attention`` has no CPU backward in torch 2.13
(the benchmark reports it where it runs), and the mask costs little next to the
projections. On a GPU the mask rules out the flash kernel (the memory-efficient
one runs); ``flex_attention`` there is the obvious next step.

The row stream is a pure function of ``(seed, epoch)``; global batch ``i``
is rows ``[i * G, (i + 1) * G)`` of it (``G = batch_size * world_size``), rank
``r`` reads its slice. :meth:`state_dict` is therefore one integer and a
resumed run continues exactly. Validation walks the held-out rows in order,
the last global batch filled with fully ignored rows so every rank runs the
same number of forwards. The state also keeps a fingerprint of the examples,
so a resume over edited data is refused instead of continuing on other rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from llamaforge.errors import ConfigError, DataError
from llamaforge.finetune.examples import Example
from llamaforge.train.batches import IGNORE

STATE_VERSION = 1
_GROUP_WINDOW = 64  # global batches per length-sorting window (unpacked)


class FinetuneLoader:
    masked = True  # the trainer uses the token-mean loss of llamaforge.train.batches

    def __init__(
        self,
        examples: list[Example],
        seq_len: int,
        batch_size: int,
        *,
        packing: bool = True,
        split: str = "train",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_batches: int | None = None,
        pad_multiple: int = 8,
        vocab_size: int = 0,
    ) -> None:
        if not examples:
            raise DataError(f"no {split} examples (check finetune.data and finetune.val_fraction)")
        if split not in ("train", "val"):
            raise ConfigError(f"unknown split {split!r}")
        too_long = max(len(e) for e in examples)
        if too_long > seq_len:
            raise ConfigError(f"an example has {too_long} positions, more than seq_len {seq_len}")
        self.examples, self.seq_len, self.batch_size = examples, seq_len, batch_size
        self.packing, self.split, self.seed = packing, split, seed
        self.rank, self.world_size, self.max_batches = rank, world_size, max_batches
        self.pad_multiple, self.vocab_size = pad_multiple, vocab_size
        self.global_batch = batch_size * world_size
        self.rows_taken = 0
        self._fingerprint: str | None = None
        self._epochs: list[list[list[int]]] = []  # rows (lists of example indices) per epoch
        self._starts: list[int] = [0]  # first global row index of each epoch

    # ---- the row plan ------------------------------------------------------
    def _order(self, epoch: int) -> np.ndarray:
        if self.split == "val":
            return np.arange(len(self.examples))
        return np.random.default_rng([self.seed, 0xF17E, epoch]).permutation(len(self.examples))

    def _plan(self, epoch: int) -> list[list[int]]:
        order = [int(i) for i in self._order(epoch)]
        lengths = [len(self.examples[i]) for i in order]
        if self.packing:
            rows, row, used = [], [], 0
            for index, length in zip(order, lengths, strict=True):
                if used + length > self.seq_len:
                    rows.append(row)
                    row, used = [], 0
                row.append(index)
                used += length
            rows.append(row)
            return rows
        if self.split == "val":
            return [[i] for i in order]
        window = self.global_batch * _GROUP_WINDOW
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: -len(self.examples[i]))
            batches += [
                chunk[k : k + self.global_batch] for k in range(0, len(chunk), self.global_batch)
            ]
        perm = np.random.default_rng([self.seed, 0x6B0B, epoch]).permutation(len(batches))
        return [[i] for b in perm for i in batches[b]]

    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        while len(self._epochs) <= epoch:
            rows = self._plan(len(self._epochs))
            self._epochs.append(rows)
            self._starts.append(self._starts[-1] + len(rows))
        return self._epochs[epoch]

    def _row(self, index: int) -> list[int]:
        epoch = 0
        while True:
            rows = self._epoch_rows(epoch)
            if index < self._starts[epoch + 1]:
                return rows[index - self._starts[epoch]]
            epoch += 1

    def steps_for_epochs(self, epochs: float) -> int:
        """Optimizer steps (global batches) covering ``epochs`` passes over the rows."""
        whole = math.floor(epochs)
        self._epoch_rows(whole)
        rows = self._starts[whole] + math.ceil((epochs - whole) * len(self._epochs[whole]))
        return max(1, math.ceil(rows / self.global_batch))

    # ---- batches -----------------------------------------------------------
    def _collate(self, rows: list[list[int]]) -> tuple[torch.Tensor, ...]:
        if self.packing:
            width = self.seq_len
        else:
            longest = max((len(self.examples[r[0]]) for r in rows if r), default=1)
            width = min(self.seq_len, math.ceil(longest / self.pad_multiple) * self.pad_multiple)
        inputs = np.zeros((len(rows), width), dtype=np.int64)
        targets = np.full((len(rows), width), IGNORE, dtype=np.int64)
        documents = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            pos = 0
            for d, index in enumerate(row):
                example = self.examples[index]
                n = len(example)
                inputs[r, pos : pos + n] = example.inputs
                targets[r, pos : pos + n] = example.targets
                documents[r, pos : pos + n] = d
                pos += n
            documents[r, pos:] = len(row)  # padding: a document of its own
        out = torch.from_numpy(inputs), torch.from_numpy(targets)
        return (*out, torch.from_numpy(documents)) if self.packing else out

    def _global_rows(self, first: int) -> list[list[int]]:
        return [self._row(first + k) for k in range(self.global_batch)]

    def _mine(self, rows: list[list[int]]) -> list[list[int]]:
        return rows[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        if self.split != "train":
            raise RuntimeError("next_batch() is for the training split; iterate a val loader")
        rows = self._global_rows(self.rows_taken)
        self.rows_taken += self.global_batch
        return self._collate(self._mine(rows))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        rows = self._epoch_rows(0)
        n_batches = math.ceil(len(rows) / self.global_batch)
        if self.max_batches is not None:
            n_batches = min(n_batches, self.max_batches)
        for b in range(n_batches):
            chunk = rows[b * self.global_batch : (b + 1) * self.global_batch]
            chunk = chunk + [[] for _ in range(self.global_batch - len(chunk))]
            yield self._collate(self._mine(chunk))

    # ---- resume ------------------------------------------------------------
    def fingerprint(self) -> str:
        """SHA-256 of every example's ids and targets, in order: what the row plan is made of.

        Resuming over edited data with the same number of examples would
        otherwise continue silently with other rows than the first run saw.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for example in self.examples:
                digest.update(len(example).to_bytes(8, "little"))
                digest.update(np.ascontiguousarray(example.inputs, dtype="<i8").tobytes())
                digest.update(np.ascontiguousarray(example.targets, dtype="<i8").tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "kind": "finetune", "rows_taken": self.rows_taken,
            "seed": self.seed, "packing": self.packing, "n_examples": len(self.examples),
            "global_batch": self.global_batch, "fingerprint": self.fingerprint(),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "finetune":
            raise DataError("the checkpoint's loader state is not a finetuning loader's")
        mine = (self.seed, self.packing, len(self.examples))
        theirs = (state["seed"], state["packing"], state["n_examples"])
        if mine != theirs:
            raise DataError(
                f"the checkpoint was written with finetune data (seed, packing, examples) = "
                f"{theirs}, this run has {mine}; resume with the same data and settings"
            )
        stored = state.get("fingerprint")  # absent in checkpoints from before it was kept
        if stored is not None and stored != self.fingerprint():
            raise DataError(
                "the finetune data (or the tokenizer, template or length rule that made its "
                "examples) changed since the checkpoint was written: its examples' fingerprint "
                "differs; resume with the same data, or start a new run_dir"
            )
        self.rows_taken = int(state["rows_taken"])
