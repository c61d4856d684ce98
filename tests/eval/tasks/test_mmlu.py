"""MMLU: the original 5-shot prompt, letter scoring, categories and averages."""

import ast
import importlib.util
from pathlib import Path

import pytest

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.tasks.base import get_task, load_docs
from llamaforge.eval.tasks.mmlu import CATEGORY_SUBJECTS, SUBJECT_CATEGORY, build_prompt
from tests.eval.tasks.test_commonsense import RuleModel, ctx_for, write_jsonl
from tests.eval.toy import TOK


def record(subject, question, answer, last="d"):
    return {"question": question, "subject": subject,
            "choices": ["a", "b", "c", last], "answer": answer}  # fmt: skip


def test_category_map_is_the_standard_one():
    # lm-eval's copy of Hendrycks et al.'s subject -> category table, as an independent check
    # (read from its source: importing lm_eval takes seconds).
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        pytest.skip("lm-eval is not installed")
    source = Path(spec.origin).parent / "tasks" / "mmlu" / "_generate_configs.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    (subjects,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SUBJECTS"
    ]
    assert subjects == SUBJECT_CATEGORY
    assert len(SUBJECT_CATEGORY) == 57
    assert sum(len(s) for s in CATEGORY_SUBJECTS.values()) == 57


def test_prompt_with_the_first_shots_of_the_same_subject(tmp_path):
    dev = [
        record("high_school_physics", "Unit of force?", 1, last="watt"),
        record("philosophy", "Who wrote Republic?", 0),
        record("high_school_physics", "  Speed of light?  ", 2),
        record("high_school_physics", "Not used: only two shots", 3),
    ]
    write_jsonl(tmp_path / "mmlu" / "dev.jsonl", dev)
    write_jsonl(tmp_path / "mmlu" / "test.jsonl", [record("high_school_physics", "g = ?", 3)])
    task = get_task("mmlu")
    docs = load_docs(task, "test", data_dir=tmp_path)
    pool = load_docs(task, "dev", data_dir=tmp_path)
    (question,) = task.questions(docs, pool, 2)
    prompt = (
        "The following are multiple choice questions (with answers) about high school physics.\n\n"
        "Unit of force?\nA. a\nB. b\nC. c\nD. watt\nAnswer: B\n\n"
        "Speed of light?\nA. a\nB. b\nC. c\nD. d\nAnswer: C\n\n"
        "g = ?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
    )
    assert list(question.requests) == [(prompt, f" {x}") for x in "ABCD"]
    assert question.gold == 3
    assert task.default_shots == 5 and task.dataset.fewshot_split == "dev"
    with pytest.raises(ConfigError, match="3 high_school_physics examples"):
        task.questions(docs, pool, 4)


def test_letter_answers_and_unknown_subjects():
    zero_shot = build_prompt(record("virology", "Q?", "C"), [])
    assert zero_shot.startswith("The following are multiple choice questions (with answers) about ")
    assert get_task("mmlu").questions([record("virology", "Q?", "C")], [], 0)[0].gold == 2
    with pytest.raises(DataError, match="unknown subject 'astrology'"):
        build_prompt(record("astrology", "Q?", 0), [])


def test_category_and_average_accuracies():
    # Each question's fourth choice names it; the model is steered to a letter per question.
    # Unsteered, every letter ties and "A" (index 0) is picked.
    cases = [  # subject, gold, steered-to (None: A)
        ("abstract_algebra", 2, "C"),
        ("abstract_algebra", 1, None),
        ("philosophy", 3, "D"),
        ("sociology", 1, "C"),
        ("marketing", 0, None),
        ("marketing", 2, "C"),
        ("marketing", 3, None),
    ]
    docs, rules = [], []
    for i, (subject, gold, steer) in enumerate(cases):
        docs.append(record(subject, f"Question {i}?", gold, last=f"q{i}"))
        if steer:
            rules.append((f"q{i}\nAnswer: ", steer, 5.0))
    got = get_task("mmlu").evaluate(ctx_for(RuleModel(rules)), docs, [], 0)
    subjects = {"abstract_algebra": 1 / 2, "philosophy": 1.0, "sociology": 0.0, "marketing": 2 / 3}
    assert got["acc"] == pytest.approx(sum(subjects.values()) / 4)  # macro over subjects
    assert got["acc_micro"] == pytest.approx(4 / 7)
    assert got["acc_stem"] == pytest.approx(0.5)
    assert got["acc_humanities"] == pytest.approx(1.0)
    assert got["acc_social_sciences"] == pytest.approx(0.0)
    assert got["acc_other"] == pytest.approx(2 / 3)
    assert got["acc_subject_marketing"] == pytest.approx(2 / 3)
    assert got["n"] == 7


def shot_length_records():
    """Five equal-length dev shots; a question as long as three of them, and a short one."""
    dev = [record("virology", f"Dev question {i} " + "x" * 80 + "?", i % 4) for i in range(5)]
    shot = len(build_prompt(dev[0], dev[:1])) - len(build_prompt(dev[0], []))
    long_doc = record("virology", "Long " + "y" * (3 * shot) + "?", 1)
    return dev, [long_doc, record("virology", "Short?", 2)], shot


def test_shots_are_dropped_until_the_prompt_fits_not_cut_from_the_left():
    dev, (long_doc, short_doc), shot = shot_length_records()
    # one token per character: BOS + prompt + " A" must fit max_len + 1 tokens
    max_len = len(build_prompt(long_doc, dev[:2])) + 2
    fitted = get_task("mmlu").fitted_questions([long_doc, short_doc], dev, 5, TOK, max_len)
    (long_q, long_k, long_fits), (short_q, short_k, short_fits) = fitted
    assert (long_k, short_k) == (2, 5) and long_fits and short_fits
    prompt = long_q.requests[0][0]
    assert prompt == build_prompt(long_doc, dev[:2])  # the first two shots, instruction intact
    assert prompt.startswith("The following are multiple choice questions")
    assert len(build_prompt(long_doc, dev[:3])) + 2 > max_len  # a third shot would not fit
    assert short_q.requests[0][0] == build_prompt(short_doc, dev)


def test_lost_shots_and_truncated_prompts_are_counted_in_the_metrics():
    dev, docs, _ = shot_length_records()
    max_len = len(build_prompt(docs[0], dev[:2])) + 2
    model = RuleModel(max_seq_len=max_len)
    got = get_task("mmlu").evaluate(ctx_for(model, max_seq_len=max_len), docs, dev, 5)
    assert got["prompts_fewer_shots"] == 1 and got["prompts_truncated"] == 0
    assert got["shots_used"] == pytest.approx((2 + 5) / 2)
    # a window the long question does not fit even alone: 0 shots, then cut by the scorer
    small = len(build_prompt(docs[0], [])) - 10
    got = get_task("mmlu").evaluate(ctx_for(RuleModel(max_seq_len=small)), docs, dev, 5)
    assert got["prompts_truncated"] == 1 and got["prompts_fewer_shots"] == 2
    assert got["n"] == 2


def test_prompt_equals_lm_evals_mmlu_task(tmp_path, monkeypatch):
    """lm-eval's own ``mmlu_virology`` config, on local records, builds our prompts exactly."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dev = [record("virology", f"  Dev question {i}? ", i % 4, last=f"d{i}") for i in range(5)]
    test = [record("virology", f"Test question {i}?", (i + 1) % 4) for i in range(3)]
    for split, rows in (("dev", dev), ("test", test)):
        write_jsonl(tmp_path / f"{split}.jsonl", rows)
    theirs = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default" / "mmlu_virology.yaml"
    (tmp_path / "lf_mmlu.yaml").write_text(
        f"include: {theirs}\ntask: lf_mmlu\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  cache_dir: {tmp_path / 'cache'}\n  data_files:\n"
        f"    test: {tmp_path / 'test.jsonl'}\n    dev: {tmp_path / 'dev.jsonl'}\n",
        encoding="utf-8",
    )
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    task = manager.load(["lf_mmlu"])["tasks"]["lf_mmlu"]
    task.set_config("num_fewshot", 5)
    task.build_all_requests(limit=None, rank=0, world_size=1)
    theirs_requests = sorted(task.instances, key=lambda i: (i.doc_id, i.idx))
    ours = get_task("mmlu").questions(test, dev, 5)
    assert [tuple(i.arguments) for i in theirs_requests] == [r for q in ours for r in q.requests]
