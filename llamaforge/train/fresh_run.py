"""``checkpoint.resume = "never"`` in a run folder that already holds a run.

Starting at step 0 beside another run's outputs would mix the two: new
``step_N`` folders next to old ones (the new run's ``keep_last`` pruning the
old run's checkpoints, a later ``resume = "auto"`` picking whichever is
newest), both runs' rows in one ``metrics.jsonl``, both in one TensorBoard
log. "never" means "a new run", so:

* **Refused by default**, before the model is allocated and with nothing
  changed: one line naming the folder and the newest checkpoint (or the first
  earlier output), telling the user to choose another ``train.run_dir``,
  resume it (``--resume auto``), or pass ``--fresh-run``.
* **With** ``checkpoint.fresh_run = true`` (``--fresh-run``) the earlier run is
  moved, never deleted, into ``RUN/previous-<UTC timestamp>/`` under the run
  folder's lock, before the new run writes anything: its ``metrics.jsonl``,
  ``summary.json``, ``report.md``, ``loss.png``, ``tasks.png``,
  ``tensorboard/``, ``finetune_data.json`` (a finetuning run's data counts,
  rewritten by every launch), and, under ``previous-*/checkpoints/``, every
  ``step_*`` and ``damaged-step_*`` folder of the checkpoint folder. A checkpoint folder
  on another filesystem than the run folder (``checkpoint.dir`` elsewhere)
  keeps its earlier checkpoints in ``CHECKPOINT_DIR/previous-<timestamp>/``
  instead (a rename cannot cross filesystems; copying could fill the disk).
  ``previous-*`` is outside the ``step_*`` namespace, so nothing of the new
  run resumes from, counts or prunes those checkpoints.

``resume = "auto"`` with no checkpoint to continue starts at step 0 as well:
the outputs above, if any (a run killed before its first checkpoint, or the
user's own files of those names), are moved into ``previous-<timestamp>/``
with a warning instead of being overwritten or appended to.

What is "an earlier run" is exactly the list above; other files in the run
folder (the user's notes, the lock file, crashed ``.tmp-*`` saves, which the
next save removes as before) neither trigger the refusal nor move. A kill
mid-move leaves every file either in place or moved, none lost: checkpoints
move oldest first and the logs last, so what remains in place is the newest
part of the earlier run, and the next ``--fresh-run`` moves it too.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from llamaforge.errors import ConfigError
from llamaforge.train.checkpoint_files import fsync_path, list_checkpoints
from llamaforge.train.config import TrainConfig
from llamaforge.train.rng import CheckpointWarning

RUN_OUTPUTS = (
    "metrics.jsonl", "summary.json", "report.md", "loss.png", "tasks.png", "tensorboard",
    "finetune_data.json",
)  # fmt: skip


def _checkpoint_folders(directory: Path) -> list[Path]:
    """Earlier ``step_*`` folders oldest first, then ``damaged-step_*`` ones."""
    steps = [path for _, path in reversed(list_checkpoints(directory))]
    damaged = sorted(directory.glob("damaged-step_*")) if directory.is_dir() else []
    return steps + [path for path in damaged if path.is_dir()]


def _run_outputs(run_dir: Path) -> list[Path]:
    return [run_dir / name for name in RUN_OUTPUTS if os.path.lexists(run_dir / name)]


def earlier_run(cfg: TrainConfig) -> str | None:
    """One line why ``resume = "never"`` may not start here, or None when the folder is free."""
    if cfg.checkpoint.resume != "never" or cfg.checkpoint.fresh_run:
        return None
    run_dir, ckpt_dir = Path(cfg.train.run_dir), cfg.checkpoint_dir
    newest = list_checkpoints(ckpt_dir)
    found = newest[0][1] if newest else (_checkpoint_folders(ckpt_dir) + _run_outputs(run_dir))
    if not found:
        return None
    what = f"checkpoints (newest: {found})" if newest else f"an earlier run's output ({found[0]})"
    return (
        f"checkpoint.resume = 'never' but {run_dir} already holds {what}; starting over there "
        "would mix the two runs. Choose another train.run_dir, continue it with --resume auto, "
        "or pass --fresh-run (checkpoint.fresh_run=true) to move the earlier run into "
        f"{run_dir}/previous-<timestamp>/ and start from step 0"
    )


def _fresh_folder(parent: Path, stamp: str) -> Path:
    n = 1
    while True:
        folder = parent / (f"previous-{stamp}" if n == 1 else f"previous-{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            n += 1


def move_earlier_run(cfg: TrainConfig, *, outputs_only: bool = False) -> list[Path]:
    """Refuse (see :func:`earlier_run`) or, with ``fresh_run``, move the earlier run aside.

    Call holding the run folder's lock. Returns the ``previous-*`` folders created.
    ``outputs_only``: ``resume = "auto"`` found no checkpoint to continue, so the
    run starts at step 0; the outputs already in the folder (a run killed
    before its first checkpoint, or files the user keeps under those names)
    are moved aside the same way instead of being overwritten or appended to.
    """
    if outputs_only:
        outputs = _run_outputs(Path(cfg.train.run_dir))
        if not outputs:
            return []
        previous = _fresh_folder(
            Path(cfg.train.run_dir), time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        )
        for path in outputs:
            os.replace(path, previous / path.name)
        fsync_path(Path(cfg.train.run_dir))
        warnings.warn(
            f"no checkpoint to resume in {cfg.checkpoint_dir}: this run starts at step 0, and "
            f"the outputs already in {cfg.train.run_dir} were moved into {previous}",
            CheckpointWarning,
            3,
        )
        return [previous]
    problem = earlier_run(cfg)
    if problem is not None:
        raise ConfigError(problem)
    if cfg.checkpoint.resume != "never":
        return []
    run_dir, ckpt_dir = Path(cfg.train.run_dir), cfg.checkpoint_dir
    checkpoints, outputs = _checkpoint_folders(ckpt_dir), _run_outputs(run_dir)
    if not checkpoints and not outputs:
        return []
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    created: list[Path] = []
    previous = None
    if outputs or (checkpoints and _same_filesystem(ckpt_dir, run_dir)):
        previous = _fresh_folder(run_dir, stamp)
        created.append(previous)
    if checkpoints:
        if previous is not None and _same_filesystem(ckpt_dir, run_dir):
            target = previous / "checkpoints"
            target.mkdir()
        else:
            target = _fresh_folder(ckpt_dir, stamp)
            created.append(target)
        for path in checkpoints:  # oldest first
            os.replace(path, target / path.name)
        fsync_path(ckpt_dir)
    for path in outputs:  # the logs last
        os.replace(path, previous / path.name)
    fsync_path(run_dir)
    where = ", ".join(str(folder) for folder in created)
    warnings.warn(f"--fresh-run: the earlier run was moved into {where}", CheckpointWarning, 3)
    return created


def _same_filesystem(a: Path, b: Path) -> bool:
    return a.is_dir() and b.is_dir() and a.stat().st_dev == b.stat().st_dev
