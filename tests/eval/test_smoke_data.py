"""The smoke set is read by the real task loaders, in every task's own schema."""

from __future__ import annotations

from pathlib import Path

from llamaforge.eval.smoke_data import SMOKE_TASKS, write_smoke_set
from llamaforge.eval.tasks.base import get_task, load_docs
from llamaforge.eval.tasks.choice_task import MultipleChoiceTask


def test_every_task_loads_and_parses_its_smoke_items(tmp_path: Path) -> None:
    counts = write_smoke_set(tmp_path)
    assert sorted(counts) == sorted(SMOKE_TASKS)
    for name in SMOKE_TASKS:
        task = get_task(name)
        docs = load_docs(task, task.dataset.split, data_dir=tmp_path)
        pool = load_docs(task, task.dataset.fewshot_split, data_dir=tmp_path)
        assert len(docs) == counts[name] >= 4 and len(pool) >= 1
        for doc in docs:
            if isinstance(task, MultipleChoiceTask):
                choices = task.doc_to_choices(doc)
                assert 0 <= task.doc_to_gold(doc) < len(choices) and task.doc_to_text(doc)
            else:
                assert task.gold_answers(doc) and task.question(doc).endswith("?")


def test_rewriting_gives_the_same_bytes(tmp_path: Path) -> None:
    write_smoke_set(tmp_path)
    first = {p: p.read_bytes() for p in tmp_path.rglob("*.jsonl")}
    write_smoke_set(tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.jsonl")} == first
