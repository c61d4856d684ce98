"""Damaged checkpoints: set aside, never counted toward ``keep_last``, never deleted.

A step folder is damaged when its manifest is missing or a listed file is
missing, truncated or fails its sha256 (see
:func:`~llamaforge.train.checkpoint_files.verify_checkpoint`). Policy:

* **Resume** (``checkpoint.resume = "auto"``) goes through
  :meth:`DamagedCheckpoints.resume_point`: damaged folders newer than the
  newest valid checkpoint are renamed ``damaged-step_N`` (one warning naming
  each and why) and the run continues from the valid one. When every
  checkpoint is damaged the run is refused, with nothing changed, unless
  ``checkpoint.restart_over_damaged = true`` (``--restart-over-damaged``):
  then all are set aside and the run starts from step 0.
* **Pruning** counts a checkpoint toward ``keep_last`` only once it is known
  intact (written by this process, or verified once: one sha256 pass over
  each older checkpoint inside the window, at the first save after a
  resume); one found damaged is set aside instead. Pruning deletes only folders holding our manifest that
  are older than the ``keep_last`` newest intact ones.
* **A save of a step that exists** replaces the old folder only when it is
  intact; a damaged (or foreign, manifest-less) one is set aside first.

``damaged-step_*`` folders are outside the ``step_*`` namespace, so nothing
resumes from, counts or replaces them, and nothing of llamaforge deletes
them: only the user can tell whether one is worth rescuing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from llamaforge.errors import CheckpointError
from llamaforge.train.checkpoint_files import (
    damaged_note,
    scan_checkpoints,
    set_aside,
    verify_checkpoint,
)
from llamaforge.train.rng import CheckpointWarning


class DamagedCheckpoints:
    """Mixin of :class:`~llamaforge.train.checkpoint.CheckpointManager` (``directory``)."""

    directory: Path
    _good: set[str]

    def _agree(self, work: Any) -> Any:
        """Run ``work()`` once for the run (the distributed subclass: on rank 0, shared)."""
        return work()

    def _is_intact(self, path: Path) -> bool:
        """Verified once per manager: written here, or checked (and set aside if damaged)."""
        if path.name in self._good:
            return True
        try:
            verify_checkpoint(path)
        except CheckpointError as error:
            moved = set_aside(path)
            warnings.warn(damaged_note([(path, str(error), moved)]), CheckpointWarning, 3)
            return False
        self._good.add(path.name)
        return True

    def resume_point(self, restart_over_damaged: bool = False) -> Path | None:
        """The checkpoint ``resume = "auto"`` continues from, or None to start at step 0.

        Damaged checkpoints newer than the newest valid one are set aside
        (renamed ``damaged-step_N``, one warning). When every checkpoint is
        damaged, raise CheckpointError, or with ``restart_over_damaged`` set
        them all aside and return None.
        """

        def work() -> Path | None:
            found, damaged = scan_checkpoints(self.directory)
            if damaged and found is None and not restart_over_damaged:
                raise CheckpointError(
                    f"every checkpoint in {self.directory} is damaged ({len(damaged)}; newest: "
                    f"{damaged[0][1]}); nothing was changed. Repair or move them, resume one "
                    "explicitly with --resume PATH, or pass --restart-over-damaged "
                    "(checkpoint.restart_over_damaged=true) to set them aside as "
                    "damaged-step_* and start from step 0"
                )
            if damaged:
                moved = [(path, problem, set_aside(path)) for path, problem in damaged]
                warnings.warn(damaged_note(moved), CheckpointWarning, stacklevel=4)
            if found is not None:
                self._good.add(found.name)
            return found

        found = self._agree(work)
        return None if found is None else Path(found)
