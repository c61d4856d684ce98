"""Packed, shuffled, mixed and resumable training sequences from token folders.

LLaMA trains on fixed 2048-token sequences packed from a mixture of sources
drawn with Table 1's sampling proportions. Design decisions:

* **Windows.** A source's folders form one token stream; window ``w`` is
  tokens ``[w * seq_len, w * seq_len + seq_len + 1)``, input ``[:-1]`` and
  target ``[1:]``. Consecutive windows share one token (the last target of
  one is the first input of the next), as in Megatron-LM, so every token but
  the first is a target exactly once and nothing is thrown away. A window may
  span documents (separated by EOS, BOS) and shards.
* **Split.** The last ``ceil(val_fraction * n_windows)`` windows of each source
  are validation, the rest training (Megatron's contiguous split): a tail, not
  every k-th window, so no document straddles many train/val boundaries.
  Shuffle documents upstream if a source's files are ordered by topic. The
  split depends on ``val_fraction``, so keep it fixed for a run.
* **Mixture.** Which source each sequence of global batch ``i`` comes from is
  drawn from ``weights`` (normalised) by a generator seeded with ``(seed, i)``;
  a source that runs out starts a new epoch, so sources are repeated or
  under-sampled exactly like the paper's "epochs" column.
* **Order within a source** is a seeded pseudo-random permutation per epoch,
  computed by a keyed Feistel network with cycle walking: O(1) memory and
  O(1) per index, where a stored ``np.random.permutation`` would need 8 bytes
  per window (about 4 GB for 1T tokens in 2048-token windows).
* **Resume.** Global batch ``i`` is a pure function of ``(seed, i)`` and the
  per-source cursors (sequences taken so far), so :meth:`state_dict` is a few
  integers and restoring it continues exactly where the run stopped.
* **Data parallel.** Every rank draws the whole global batch of
  ``batch_size * world_size`` sequences, advances the same cursors and reads
  only its slice ``[rank * batch_size, (rank + 1) * batch_size)``: ranks are
  disjoint, their union is the single-process stream, and the state is the
  same on every rank (also across a change of ``world_size``).
* **Validation** (``split="val"``) walks the held-out windows of all sources
  in a fixed order, interleaved in proportion to the weights (a smooth
  weighted round-robin), so any prefix (``max_batches``) is a fair sample of
  the mixture. Only full global batches are yielded (equal shapes on every
  rank and step); each ``iter()`` starts the same pass again.
"""

from __future__ import annotations

import heapq
import math
import numbers
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llamaforge.data.shards import TokenShards
from llamaforge.errors import ConfigError, DataError

STATE_VERSION = 1
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a cheap, well-scrambling round function."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


class FeistelPermutation:
    """A seeded bijection of ``[0, n)``: ``perm(indices)`` without storing a permutation.

    A balanced 4-round Feistel network on the smallest even number of bits
    covering ``n`` is a permutation of ``[0, 2**bits)``; re-applying it to
    values ``>= n`` ("cycle walking") restricts it to ``[0, n)``. Since
    ``2**bits < 4n``, each index needs fewer than 4 passes on average.
    """

    def __init__(self, n: int, seed: Sequence[int], rounds: int = 4) -> None:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        self.n = n
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self._half = np.uint64(bits // 2)
        self._mask = np.uint64((1 << (bits // 2)) - 1)
        self._keys = np.random.SeedSequence(list(seed)).generate_state(rounds, dtype=np.uint64)

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self._half, x & self._mask
        for key in self._keys:
            left, right = right, left ^ (_mix64(right ^ key) & self._mask)
        return (left << self._half) | right

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        x = np.asarray(indices, dtype=np.uint64)
        if x.size and int(x.max()) >= self.n:
            raise IndexError(f"index {int(x.max())} outside [0, {self.n})")
        with np.errstate(over="ignore"):
            out = self._encrypt(x)
            outside = out >= self.n
            while outside.any():
                out[outside] = self._encrypt(out[outside])
                outside = out >= self.n
        return out.astype(np.int64)


def _normalised_weights(paths: list[Path], weights: list[Any]) -> np.ndarray:
    """Sampling probabilities from positive finite weights, whatever their scale.

    Dividing by the largest weight first keeps the sum finite (two weights of
    1e308 add up to inf, and every probability would become 0 or nan); a
    weight so small next to the largest that it rounds to 0 is refused, since
    its source would never be drawn.
    """
    for path, weight in zip(paths, weights, strict=True):
        ok = isinstance(weight, numbers.Real) and not isinstance(weight, bool | np.bool_)
        if not ok or not math.isfinite(weight) or weight <= 0:
            raise ConfigError(
                f"data source {path}: weights must be positive finite numbers, got {weight!r}; "
                "give each source a weight > 0 (they are normalised to sum to 1)"
            )
    scaled = np.asarray(weights, dtype=np.float64) / max(float(w) for w in weights)
    for path, weight, share in zip(paths, weights, scaled, strict=True):
        if share == 0:
            raise ConfigError(
                f"data source {path}: weight {weight!r} is too small next to the largest "
                f"({max(weights)!r}) to ever be drawn; raise it or drop the source"
            )
    return scaled / scaled.sum()


class TokenLoader:
    """Batches of ``(inputs, targets)``, int64 tensors of shape ``(batch_size, seq_len)``.

    ``sources`` are ``(token_folder, weight)`` pairs (a lone folder means weight
    1). ``batch_size`` is per rank. ``max_batches`` caps each ``iter()``. See
    the module docstring for the order, split and resume guarantees.
    """

    def __init__(
        self,
        sources: Sequence[tuple[str | Path, float]] | str | Path,
        seq_len: int,
        batch_size: int,
        *,
        split: str = "train",
        val_fraction: float = 0.01,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_batches: int | None = None,
    ) -> None:
        if isinstance(sources, str | Path):
            sources = [(sources, 1.0)]
        if not sources:
            raise ConfigError("data sources: give at least one (token_folder, weight) pair")
        for name, value in (
            ("seq_len", seq_len),
            ("batch_size", batch_size),
            ("world_size", world_size),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"data.{name} must be a positive integer, got {value!r}")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside [0, world_size={world_size})")
        if split not in ("train", "val"):
            raise ConfigError(f"unknown split {split!r}; use 'train' or 'val'")
        if not 0 <= val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        if split == "val" and val_fraction == 0:
            raise ConfigError("split='val' needs data.val_fraction > 0")
        if max_batches is not None and max_batches <= 0:
            raise ConfigError(f"max_batches must be positive or None, got {max_batches}")
        self.paths = [Path(p) for p, _ in sources]
        self.weights = _normalised_weights(self.paths, [w for _, w in sources])
        self.seq_len, self.batch_size, self.split, self.seed = seq_len, batch_size, split, seed
        self.rank, self.world_size, self.max_batches = rank, world_size, max_batches
        self.global_batch = batch_size * world_size

        self.shards = [TokenShards(p) for p in self.paths]
        first = self.shards[0]
        for path, shards in zip(self.paths, self.shards, strict=True):
            mine = (shards.vocab_size, shards.eos_id, shards.bos_id)
            if mine != (first.vocab_size, first.eos_id, first.bos_id):
                raise DataError(
                    f"{path} was tokenized with vocab_size/eos/bos {mine}, but {self.paths[0]} "
                    f"with {(first.vocab_size, first.eos_id, first.bos_id)}; tokenize all "
                    "sources with the same tokenizer"
                )
        self.n_train, self.n_val = [], []
        for path, shards in zip(self.paths, self.shards, strict=True):
            n = (len(shards) - 1) // seq_len
            n_val = math.ceil(val_fraction * n)
            if n - n_val < 1:
                raise DataError(
                    f"{path} has {len(shards)} tokens, too few for one training window of "
                    f"seq_len + 1 = {seq_len + 1} tokens (val_fraction={val_fraction}); "
                    "add data or lower seq_len"
                )
            self.n_train.append(n - n_val)
            self.n_val.append(n_val)
        if split == "val" and sum(self.n_val) < self.global_batch:
            raise DataError(
                f"only {sum(self.n_val)} validation windows, fewer than one global batch of "
                f"{self.global_batch}; raise val_fraction or lower batch_size"
            )
        self.vocab_size = first.vocab_size
        self.batches = 0  # global batches yielded (train) or position in the pass (val)
        self.cursors = [0] * len(self.paths)  # sequences taken from each source (train)
        self._perms: dict[tuple[int, int], FeistelPermutation] = {}
        self._val_stream: Iterator[list[tuple[int, int]]] | None = None
        self._val_pos = 0

    # ---- train order -------------------------------------------------------
    def _draw_sources(self, i: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0x50FA, i])
        return rng.choice(len(self.weights), size=self.global_batch, p=self.weights)

    def _window_ids(self, s: int, positions: np.ndarray) -> np.ndarray:
        """Window ids of the ``positions``-th sequences taken from source ``s``."""
        n = self.n_train[s]
        epochs, offsets = np.divmod(positions, n)
        out = np.empty_like(positions)
        for epoch in np.unique(epochs):
            key = (s, int(epoch))
            if key not in self._perms:
                if len(self._perms) > 64:
                    self._perms.clear()
                self._perms[key] = FeistelPermutation(n, (self.seed, s, int(epoch)))
            out[epochs == epoch] = self._perms[key](offsets[epochs == epoch])
        return out

    def _train_plan(self) -> list[tuple[int, int]]:
        """(source, window) for this rank's rows of global batch ``self.batches``; advances."""
        draws = self._draw_sources(self.batches)
        windows = np.empty(self.global_batch, dtype=np.int64)
        for s in range(len(self.paths)):
            rows = np.flatnonzero(draws == s)
            windows[rows] = self._window_ids(s, self.cursors[s] + np.arange(rows.size))
            self.cursors[s] += int(rows.size)
        self.batches += 1
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return list(zip(draws[mine].tolist(), windows[mine].tolist(), strict=True))

    # ---- validation order --------------------------------------------------
    def _val_order(self) -> Iterator[tuple[int, int]]:
        def source(s: int) -> Iterator[tuple[float, int, int]]:
            for j in range(self.n_val[s]):
                yield (j + 0.5) / self.weights[s], s, self.n_train[s] + j

        for _, s, window in heapq.merge(*(source(s) for s in range(len(self.paths)))):
            yield s, window

    def __len__(self) -> int:
        """Batches in one validation pass (capped by ``max_batches``); train is endless."""
        if self.split != "val":
            raise TypeError("the training stream is endless; use max_batches with iter()")
        n = sum(self.n_val) // self.global_batch
        return n if self.max_batches is None else min(n, self.max_batches)

    def _val_batches(self, start: int = 0) -> Iterator[list[tuple[int, int]]]:
        """This rank's rows of the pass's full global batches, from batch ``start`` on."""
        order = self._val_order()
        for _ in range(start * self.global_batch):
            next(order)
        for _ in range(start, sum(self.n_val) // self.global_batch):
            batch = [next(order) for _ in range(self.global_batch)]
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def _val_plan(self) -> list[tuple[int, int]]:
        """``next_batch()`` on the val split cycles through the pass, ignoring ``max_batches``."""
        if self._val_stream is None or self._val_pos != self.batches:
            self._val_stream, self._val_pos = self._val_batches(self.batches), self.batches
        plan = next(self._val_stream, None)
        if plan is None:
            self._val_stream, self.batches = self._val_batches(0), 0
            plan = next(self._val_stream)
        self.batches += 1
        self._val_pos = self.batches
        return plan

    # ---- batches -------------------------------------------------------------
    def _read(self, plan: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.empty((len(plan), self.seq_len + 1), dtype=np.int64)
        for r, (s, window) in enumerate(plan):
            rows[r] = self.shards[s].read(window * self.seq_len, self.seq_len + 1)
        tokens = torch.from_numpy(rows)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._read(self._train_plan() if self.split == "train" else self._val_plan())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.split == "val":
            yield from self._val_pass()
            return
        count = 0
        while self.max_batches is None or count < self.max_batches:
            yield self.next_batch()
            count += 1

    def _val_pass(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for n, plan in enumerate(self._val_batches()):
            if n == len(self):
                return
            yield self._read(plan)

    # ---- checkpointing -------------------------------------------------------
    @property
    def epochs(self) -> list[float]:
        """Epochs consumed per source (Table 1's last column, as realised so far)."""
        return [c / n for c, n in zip(self.cursors, self.n_train, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "split": self.split,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "batches": self.batches,
            "cursors": list(self.cursors),
            "sources": [
                {"path": str(p), "n_tokens": len(sh), "n_train_windows": n}
                for p, sh, n in zip(self.paths, self.shards, self.n_train, strict=True)
            ],
            "epochs": self.epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``; weights, batch size and world size may differ, the data may not."""
        mine = self.state_dict()
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"data loader state version {state.get('version')!r} is unknown")
        for key in ("split", "seed", "seq_len"):
            if state.get(key) != mine[key]:
                raise ConfigError(
                    f"data loader state has {key}={state.get(key)!r}, this loader {mine[key]!r}; "
                    "resume with the same data settings"
                )
        theirs = [(s["n_tokens"], s["n_train_windows"]) for s in state.get("sources", [])]
        ours = [(s["n_tokens"], s["n_train_windows"]) for s in mine["sources"]]
        if theirs != ours:
            raise ConfigError(
                f"data sources changed since the checkpoint (tokens, train windows per source: "
                f"{theirs} then, {ours} now); resume with the same token folders and val_fraction"
            )
        self.batches = int(state["batches"])
        self.cursors = [int(c) for c in state["cursors"]]


def sequential_batches(
    folder: str | Path, seq_len: int, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every window of a token folder once, in order (for scoring a whole corpus).

    Unlike :class:`TokenLoader` there is no split, shuffle or mixture: the
    perplexity of a held-out folder should cover all of it exactly once. The
    last batch may be smaller; a tail shorter than one window is left out.
    """
    shards = TokenShards(folder)
    n_windows = (len(shards) - 1) // seq_len
    if n_windows < 1:
        raise DataError(
            f"{folder} has {len(shards)} tokens, fewer than one window of {seq_len + 1}"
        )
    for first in range(0, n_windows, batch_size):
        rows = [
            np.asarray(shards.read(w * seq_len, seq_len + 1), dtype=np.int64)
            for w in range(first, min(first + batch_size, n_windows))
        ]
        block = torch.from_numpy(np.stack(rows))
        yield block[:, :-1], block[:, 1:]
