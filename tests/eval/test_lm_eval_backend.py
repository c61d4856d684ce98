"""lm-eval's own evaluator on local task files must see exactly our numbers."""

import json
import logging
import math
import re
import runpy
import sys

import pytest

from llamaforge.errors import ConfigError
from llamaforge.eval.generation import generate_completions
from llamaforge.eval.likelihood import loglikelihood, loglikelihood_rolling
from llamaforge.eval.lm_eval_backend import LlamaforgeLM
from llamaforge.formats import save_any
from llamaforge.inference.generate import generate
from llamaforge.inference.sampling import SamplingConfig
from tests.eval.toy import tiny_transformer

QUESTIONS = [
    ("the answer to question 3 is", [" the 21 cats", " the 5 cats on a mat", " 9"], 0),
    ("the answer to question 12 is", [" cats", " the 84 cats on a mat"], 1),
    ("question 7 is", [" on a mat", " the 49", " cats", " 3"], 2),
    ("the 21 cats", [" on a mat", " is"], 0),
]
TEXTS = [
    "the answer to question 1 is the 7 cats on a mat",
    # longer than the 24-token window: scored in rolling windows
    "the answer to question 2 is the 14 cats on a mat. " * 4,
]
PROMPTS = ["the answer to question 4 is", "question 9", "the 63 cats"]


def _yaml(path, body):
    path.write_text(body, encoding="utf-8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, real_tokenizer):
    root = tmp_path_factory.mktemp("lm_eval")
    model = tiny_transformer(real_tokenizer.vocab_size, max_seq_len=24).eval()
    checkpoint = save_any(model, root / "ckpt", "native", tokenizer_path=real_tokenizer.model_path)
    greedy = generate(
        model, real_tokenizer, PROMPTS, SamplingConfig(max_new_tokens=6, stop=("\n",))
    )
    data = root / "data"
    data.mkdir()
    rows = {
        "mc": [{"question": q, "choices": c, "gold": g} for q, c, g in QUESTIONS],
        "ppl": [{"page": t} for t in TEXTS],
        # the first two targets are the model's own greedy text, the last is not
        "gen": [
            {"prompt": p, "target": t}
            for p, t in zip(PROMPTS, [greedy[0], greedy[1], "not it"], strict=True)
        ],
    }
    for name, records in rows.items():
        (data / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
        )
    tasks = root / "tasks"
    tasks.mkdir()
    head = "dataset_path: json\ndataset_kwargs:\n  cache_dir: {cache}\n  data_files:\n"
    head += "    test: {file}\ntest_split: test\n"

    def header(name):
        return head.format(cache=root / "hf_cache", file=data / f"{name}.jsonl")

    _yaml(
        tasks / "mc.yaml",
        "task: lf_mc\n" + header("mc") + "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{gold}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n",
    )
    _yaml(
        tasks / "ppl.yaml",
        "task: lf_ppl\n" + header("ppl") + "output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{page}}"\n'
        "metric_list:\n  - metric: word_perplexity\n",
    )
    _yaml(
        tasks / "gen.yaml",
        "task: lf_gen\n" + header("gen") + "output_type: generate_until\n"
        'doc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 6\n  do_sample: false\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
        "    higher_is_better: true\n",
    )
    # lm-eval's default max_gen_toks (256) on a 24-token model: the budget is what the context leaves
    _yaml(
        tasks / "gen_default.yaml",
        "task: lf_gen_default\n" + header("gen") + "output_type: generate_until\n"
        'doc_to_text: "{{prompt}}"\ndoc_to_target: "{{target}}"\n'
        'generation_kwargs:\n  until: ["\\n"]\n  do_sample: false\n  temperature: 0.0\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n"
        "    higher_is_better: true\n",
    )
    return model, checkpoint, tasks, greedy


@pytest.fixture(scope="module")
def evaluated(setup, monkeypatch_module):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    _, checkpoint, tasks, _ = setup
    manager = TaskManager(include_path=str(tasks), include_defaults=False)
    return simple_evaluate(
        model="llamaforge",
        model_args=f"pretrained={checkpoint},dtype=float32,device=cpu,progress=False",
        tasks=["lf_mc", "lf_ppl", "lf_gen", "lf_gen_default"],
        task_manager=manager,
        batch_size=3,
        log_samples=True,
    )


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield patch


def test_multiple_choice_loglikelihoods_and_accuracy_are_ours(setup, evaluated, real_tokenizer):
    model = setup[0]
    samples = sorted(evaluated["samples"]["lf_mc"], key=lambda s: s["doc_id"])
    correct = 0
    for sample, (question, choices, gold) in zip(samples, QUESTIONS, strict=True):
        ours = loglikelihood(model, real_tokenizer, [(question, " " + c) for c in choices])
        ours_plain = loglikelihood(
            model, real_tokenizer, [(question, " " + c) for c in choices], prefix_sharing=False
        )
        stored = [resp[0] for resp in sample["resps"]]
        assert [lp for lp, _ in stored] == pytest.approx([lp for lp, _ in ours], abs=1e-5)
        assert [lp for lp, _ in stored] == pytest.approx([lp for lp, _ in ours_plain], abs=1e-5)
        scores = [lp for lp, _ in ours]
        correct += max(range(len(scores)), key=scores.__getitem__) == gold
    assert evaluated["results"]["lf_mc"]["acc,none"] == pytest.approx(correct / len(QUESTIONS))


def test_rolling_loglikelihoods_are_ours(setup, evaluated, real_tokenizer):
    model = setup[0]
    samples = sorted(evaluated["samples"]["lf_ppl"], key=lambda s: s["doc_id"])
    ours = loglikelihood_rolling(model, real_tokenizer, TEXTS)
    stored = [s["resps"][0][0] for s in samples]
    assert stored == pytest.approx(ours, abs=1e-5)
    words = sum(len(re.split(r"\s+", t)) for t in TEXTS)  # lm-eval's word count
    expected = math.exp(-sum(ours) / words)
    assert evaluated["results"]["lf_ppl"]["word_perplexity,none"] == pytest.approx(expected)


def test_generate_until_is_greedy_and_cut_at_the_stop(setup, evaluated):
    greedy = setup[3]
    samples = sorted(evaluated["samples"]["lf_gen"], key=lambda s: s["doc_id"])
    assert [s["resps"][0][0] for s in samples] == greedy
    assert all("\n" not in g for g in greedy)
    assert evaluated["results"]["lf_gen"]["exact_match,none"] == pytest.approx(2 / 3)


def test_default_generation_budget_fits_a_small_context(setup, evaluated, real_tokenizer):
    # max_gen_toks=256 > the 24-token window: lm-eval's own rule would refuse every request;
    # we keep 12 prompt tokens and generate to the end of the window, as our runner does
    model = setup[0]
    samples = sorted(evaluated["samples"]["lf_gen_default"], key=lambda s: s["doc_id"])
    assert samples[0]["arguments"][0][1]["until"] == ["\n"]
    assert "max_gen_toks" not in samples[0]["arguments"][0][1]
    cfg = SamplingConfig(max_new_tokens=256, stop=("\n",))
    ours = generate_completions(model, real_tokenizer, PROMPTS, cfg, max_seq_len=24, progress=False)
    assert [s["resps"][0][0] for s in samples] == [c[0] for c in ours]
    assert any(len(real_tokenizer.encode(c[0], bos=False)) > 6 for c in ours)  # beyond 24 - 256


def test_greedy_requests_are_not_reported_as_ignoring_temperature(setup, real_tokenizer, caplog):
    lm = LlamaforgeLM(model=setup[0], tokenizer=real_tokenizer, device="cpu")
    with caplog.at_level(logging.WARNING, logger="llamaforge.eval.lm_eval_backend"):
        for kwargs in ({"until": ["\n"], "do_sample": False, "temperature": 0.0}, {"until": "x"}):
            assert lm._sampling(kwargs).greedy
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="llamaforge.eval.lm_eval_backend"):
        lm._sampling({"until": ["\n"], "do_sample": False, "repetition_penalty": 1.1})
    assert "repetition_penalty" in caplog.text and "temperature" not in caplog.text


def test_in_memory_model_and_bad_arguments(setup, real_tokenizer):
    model = setup[0]
    lm = LlamaforgeLM(model=model, tokenizer=real_tokenizer, batch_size="auto", device="cpu")
    assert lm.batch_size == 16 and lm.max_length == 24 and lm.rank == 0 and lm.world_size == 1
    cfg = lm._sampling({"until": "\n\n", "max_new_tokens": 3, "temperature": 0.7})
    assert cfg.stop == ("\n\n",) and cfg.max_new_tokens == 3 and cfg.temperature == 0.7
    cfg = lm._sampling({"do_sample": False, "temperature": 0.7})
    assert cfg.greedy and cfg.max_new_tokens == 256
    with pytest.raises(ConfigError, match="exactly one"):
        LlamaforgeLM()
    with pytest.raises(ConfigError, match="tokenizer"):
        LlamaforgeLM(model=model)
    with pytest.raises(ConfigError, match="dtype"):
        LlamaforgeLM(model=model, tokenizer=real_tokenizer, dtype="float8")


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_command_line_entry_point_registers_the_backend(setup, tmp_path, monkeypatch):
    """``python -m llamaforge.eval.lm_eval_backend ...`` runs lm-eval's CLI with our backend.

    Run in-process (as ``__main__``) with lm-eval's 14k built-in task configs left
    out of the index, which would take half a minute to scan.
    """
    import lm_eval.tasks

    _, checkpoint, tasks, _ = setup
    real_manager = lm_eval.tasks.TaskManager
    monkeypatch.setattr(
        lm_eval.tasks,
        "TaskManager",
        lambda **kwargs: real_manager(**kwargs, include_defaults=False),
    )
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["lm_eval_backend", "--model", "llamaforge", "--model_args"]
    argv += [f"pretrained={checkpoint},progress=False", "--tasks", "lf_mc"]
    argv += ["--include_path", str(tasks), "--limit", "2", "--output_path", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("llamaforge.eval.lm_eval_backend", run_name="__main__")
    results = list((tmp_path / "out").rglob("results*.json"))
    assert len(results) == 1
    data = json.loads(results[0].read_text())
    assert data["config"]["model"] == "llamaforge"
    assert data["results"]["lf_mc"]["sample_len"] == 2
