"""NaturalQuestions and TriviaQA: exact prompts, exact match, shot dropping, end to end."""

import json
import re

import pytest

from llamaforge.errors import DataError
from llamaforge.eval.tasks.base import EvalContext, get_task, load_docs
from tests.eval.test_generation import ScriptedModel
from tests.eval.toy import TOK

NQ = {"question": "who wrote the origin of species", "answer": ["Charles Darwin", "Darwin"]}
NQ_SHOT = {"question": "where is the eiffel tower", "answer": ["Paris"]}
TRIVIA = {
    "question": "Which Lloyd Webber musical premiered in the US on 10th December 1993?",
    "question_id": "tc_33",
    "question_source": "http://www.triviacountry.com/",
    "entity_pages": {"doc_source": [], "filename": [], "title": [], "wiki_context": []},
    "search_results": {
        "description": [], "filename": [], "rank": [], "title": [], "url": [],
        "search_context": [],
    },
    "answer": {
        "aliases": ["Sunset Blvd", "West Sunset Boulevard", "Sunset Boulevard"],
        "normalized_aliases": ["sunset blvd", "west sunset boulevard", "sunset boulevard"],
        "matched_wiki_entity_name": "",
        "normalized_matched_wiki_entity_name": "",
        "normalized_value": "sunset boulevard",
        "type": "WikipediaEntity",
        "value": "Sunset Boulevard",
    },
}  # fmt: skip


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_prompts_are_the_papers_format():
    nq = get_task("nq_open")
    assert nq.prompt(NQ, []) == "Answer these questions:\nQ: who wrote the origin of species?\nA:"
    assert nq.prompt(NQ, [NQ_SHOT]) == (
        "Answer these questions:\n"
        "Q: where is the eiffel tower?\nA: Paris\n"
        "Q: who wrote the origin of species?\nA:"
    )
    trivia = get_task("triviaqa")
    assert trivia.prompt(TRIVIA, [TRIVIA]) == (
        "Answer these questions:\n"
        "Q: Which Lloyd Webber musical premiered in the US on 10th December 1993?\n"
        "A: Sunset Boulevard\n"
        "Q: Which Lloyd Webber musical premiered in the US on 10th December 1993?\nA:"
    )
    assert trivia.dataset.hf_name == "rc.nocontext" and trivia.dataset.split == "validation"


def test_exact_match_uses_the_normalisation_aliases_and_first_line():
    nq, trivia = get_task("nq_open"), get_task("triviaqa")
    assert nq.score([NQ], [" Charles Darwin."]) == 1.0
    assert nq.score([NQ], [" the darwin\nQ: next question"]) == 1.0  # article, case, 2nd line
    assert nq.score([NQ], [" Charles Darwin wrote it"]) == 0.0
    assert nq.score([NQ, NQ], [" Darwin", " Wallace"]) == 0.5
    assert trivia.score([TRIVIA], [" Sunset Blvd"]) == 1.0  # an alias
    assert trivia.score([TRIVIA], [" Sunset"]) == 0.0
    with pytest.raises(DataError, match="'answer'"):
        trivia.score([dict(TRIVIA, answer="Sunset Boulevard")], ["x"])
    with pytest.raises(DataError, match="no 'question' field"):
        nq.prompt({"query": "x", "answer": ["y"]}, [])


CANBERRA = {"question": "what is the capital of australia", "answer": ["Canberra"]}


def test_answer_stops_at_the_first_line_break_dot_or_comma():
    # Appendix A: "we stop at the first line break, final dot or comma"
    nq = get_task("nq_open")
    assert nq.score([CANBERRA], [" Canberra, not Sydney"]) == 1.0
    assert nq.score([CANBERRA], [" Canberra. It is in the ACT"]) == 1.0
    assert nq.score([CANBERRA], [" Canberra\nQ: next, question."]) == 1.0
    assert nq.score([CANBERRA], [" Sydney, then Canberra"]) == 0.0
    # a dot inside an answer ends it too, as in lm-eval (documented consequence)
    assert nq.score([{"question": "q", "answer": ["St. Louis"]}], [" St. Louis"]) == 0.0
    assert nq.score([{"question": "q", "answer": ["3"]}], [" 3.5 metres"]) == 1.0


def test_the_stop_strings_end_generation_at_the_comma():
    class CountingModel(ScriptedModel):
        steps = 0

        def forward(self, tokens, **kwargs):
            self.steps += 1
            return super().forward(tokens, **kwargs)

    model = CountingModel(answer_last_question({CANBERRA["question"]: "Canberra, not Sydney"}))
    ctx = EvalContext(model, TOK, progress=False)
    assert get_task("nq_open").evaluate(ctx, [CANBERRA], [], 0)["exact_match"] == 1.0
    # prefill + one step per token after the first, up to the comma: " Canberra," is 10 tokens
    assert model.steps == len(" Canberra,")


def answer_last_question(answers):
    """A model that knows ``answers[question]`` for the last question of the prompt."""

    def answer_for(prompt):
        last = re.findall(r"Q: (.*)\?\nA:$", prompt)
        return f" {answers.get(last[0], 'I do not know') if last else '?'}\nQ: more"

    return answer_for


def test_end_to_end_from_local_jsonl_greedy_until_newline(tmp_path):
    wrong = {"question": "what is the capital of peru", "answer": ["Lima"]}
    write_jsonl(tmp_path / "nq_open" / "validation.jsonl", [NQ, wrong])
    write_jsonl(tmp_path / "nq_open" / "train.jsonl", [NQ_SHOT] * 3)
    task = get_task("nq_open")
    docs = load_docs(task, "validation", data_dir=tmp_path)
    fewshot = load_docs(task, "train", data_dir=tmp_path)
    model = ScriptedModel(
        answer_last_question({NQ["question"]: "Darwin", wrong["question"]: "Cusco"})
    )
    ctx = EvalContext(model, TOK, batch_size=2, progress=False)
    assert task.evaluate(ctx, docs, fewshot, 1) == {
        "exact_match": 0.5, "shots_used": 1.0, "prompts_fewer_shots": 0, "prompts_truncated": 0
    }  # fmt: skip
    assert all(p.startswith("Answer these questions:\nQ: where is") for p in model.prompts_seen)


def test_shots_that_do_not_fit_the_context_are_dropped():
    pool = [{"question": f"question number {i}", "answer": [f"answer {i}"]} for i in range(80)]
    model = ScriptedModel(answer_last_question({NQ["question"]: "Darwin"}), max_seq_len=200)
    ctx = EvalContext(model, TOK, progress=False, seed=3)
    metrics = get_task("nq_open").evaluate(ctx, [NQ], pool, 64)
    prompt = model.prompts_seen[0]
    assert metrics["exact_match"] == 1.0
    assert prompt.startswith("Answer these questions:\nQ: question number")  # not truncated
    assert len(TOK.encode(prompt)) <= 200 - 32  # room left for the 32-token answer
    # BOS + 24 (instruction) + 38 (question) + 36 per shot <= 200 - 32: 2 shots fit
    assert metrics["shots_used"] == prompt.count("\nA: ") == 2
    assert metrics["prompts_fewer_shots"] == 1 and metrics["prompts_truncated"] == 0
    # the same prompts with a large context keep all 64 shots
    model = ScriptedModel(answer_last_question({}), max_seq_len=4096)
    wide = get_task("nq_open").evaluate(EvalContext(model, TOK, progress=False), [NQ], pool, 64)
    assert wide["shots_used"] == 64.0 and wide["prompts_fewer_shots"] == 0
    # a window the question does not fit even alone: cut from the left, and counted
    model = ScriptedModel(answer_last_question({}), max_seq_len=40)
    tight = get_task("nq_open").evaluate(EvalContext(model, TOK, progress=False), [NQ], pool, 64)
    assert tight["shots_used"] == 0.0 and tight["prompts_truncated"] == 1
