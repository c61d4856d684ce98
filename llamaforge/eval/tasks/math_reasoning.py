"""GSM8k and MATH with majority voting, maj1@k (paper §3.5, Table 7).

Both tasks report ``maj1@1`` (one greedy solution per problem) and
``maj1@k``: ``k`` solutions sampled per problem, the most frequent final
answer wins (:func:`~llamaforge.eval.answers.maj_at_k`). The paper follows
Minerva (Lewkowycz et al. 2022), which sampled at temperature 0.6 with
nucleus p = 0.95 and used k = 100 for GSM8k and k = 256 for MATH. We sample
the same way but default to ``k = 8`` so a CPU run stays affordable; pass
``samples=100`` (or 256) to the task for the paper's setting, 0 to skip.
Samples are seeded from ``EvalContext.seed``.

**GSM8k** (``openai/gsm8k`` ``main``, test split; the reference answer ends
with ``#### 42``). Prompt: the standard 8-shot chain-of-thought exemplars of
Wei et al. (2022), as in lm-eval's ``gsm8k-cot``::

    Q: <question>
    A: <reasoning>. The answer is <n>.

    Q: <question>
    A:

``--shots k <= 8`` uses the first k exemplars; more than 8 draws every shot
from the training split instead (calculator annotations ``<<48/2=24>>``
removed, ``#### n`` turned into "The answer is n."). Generation stops at a
blank line or "Q:"; the answer is the number after the last "answer is"
(else the last number), compared numerically-as-text
(:func:`~llamaforge.eval.answers.extract_number`).

**MATH** (``hendrycks/competition_math``, test split: {problem, solution,
level, type}; ``EleutherAI/hendrycks_math`` holds the same records split by
subject: concatenate them into ``DATA_DIR/math/test.jsonl``). Prompt: Minerva's
``Problem:\\n...\\n\\nSolution:`` format with 4 shots (Minerva's count) drawn
from the training split, whose solutions end in ``\\boxed{answer}``; the
answer is the content of the last ``\\boxed{}`` (or Minerva's "The final
answer is $x$"), normalised by :func:`normalize_math_answer`, which applies
Minerva's published rules (the ones lm-eval's ``minerva_math`` uses) plus
``\\dfrac``/``\\tfrac`` -> ``\\frac`` and dropping ``\\left``/``\\right``.
Equivalence is string equality after normalisation (no symbolic check).
A reference answer that normalises to nothing (``\\boxed{\\$}``) is an error.
"""

from __future__ import annotations

import random
import re
from typing import ClassVar

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.answers import exact_number, extract_number, maj_at_k
from llamaforge.eval.generation import (
    context_length,
    draw_shots,
    fit_shots,
    generate_completions,
    prompt_token_budget,
)
from llamaforge.eval.tasks.base import (
    DatasetSpec,
    EvalContext,
    Task,
    located,
    register_task,
    text_field,
)
from llamaforge.inference import SamplingConfig

# Wei et al. (2022), "Chain-of-thought prompting elicits reasoning", the GSM8k exemplars.
GSM8K_EXEMPLARS = (
    (
        "There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
        "After they are done, there will be 21 trees. How many trees did the grove workers "
        "plant today?",
        "There are 15 trees originally. Then there were 21 trees after some more were planted. "
        "So there must have been 21 - 15 = 6. The answer is 6.",
    ),
    (
        "If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
        "the parking lot?",
        "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5.",
    ),
    (
        "Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they "
        "have left in total?",
        "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had "
        "32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.",
    ),
    (
        "Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How "
        "many lollipops did Jason give to Denny?",
        "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave "
        "Denny 20 - 12 = 8. The answer is 8.",
    ),
    (
        "Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How "
        "many toys does he have now?",
        "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 "
        "more toys. 5 + 4 = 9. The answer is 9.",
    ),
    (
        "There were nine computers in the server room. Five more computers were installed each "
        "day, from monday to thursday. How many computers are now in the server room?",
        "There were originally 9 computers. For each of 4 days, 5 more computers were added. So "
        "5 * 4 = 20 computers were added. 9 + 20 is 29. The answer is 29.",
    ),
    (
        "Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 "
        "more. How many golf balls did he have at the end of wednesday?",
        "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. "
        "After losing 2 more, he had 35 - 2 = 33 golf balls. The answer is 33.",
    ),
    (
        "Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
        "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she "
        "has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.",
    ),
)

_CALCULATOR = re.compile(r"<<[^>]*>>")
_FINAL_ANSWER = re.compile(r"final answer is \$?(.*?)\$?\.? I hope", re.DOTALL)
# Minerva's normalisation: textual substitutions, then units and filler removed.
_SUBSTITUTIONS = (
    ("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), ("\\ ", ""), (" ", ""),
    ("mbox", "text"), (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}"),
    ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\left", ""), ("\\right", ""),
)  # fmt: skip
_REMOVED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units",
    "\\ldots", "sue", "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm",
    "pounds", "meters", "meals", "edges", "students", "childrentickets", "multiples",
    "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2", "\\text{}^3", "\\text{\n}",
    "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"', "\\dots",
)  # fmt: skip


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed x``); None if none."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    rest = text[start + (6 if text.startswith("\\boxed", start) else 5) :]
    if rest.startswith(" "):
        return rest[1:].split("$")[0].strip()
    if not rest.startswith("{"):
        return None
    depth = 0
    for i, char in enumerate(rest):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return rest[1:i]
    return None  # unbalanced: the generation was cut inside the box


def normalize_math_answer(answer: str) -> str:
    """Canonical text of a LaTeX final answer (Minerva's rules, see the module docstring)."""
    answer = answer.split("=")[-1]
    for old, new in _SUBSTITUTIONS:
        answer = answer.replace(old, new)
    for filler in _REMOVED:
        answer = answer.replace(filler, "")
    answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", r"$\3$", answer)  # keep the first $...$
    answer = re.sub(r"\\(?:text|textbf|overline)\{(.*?)\}", r"\1", answer)
    answer = re.sub(r"\\boxed\{(.*)\}", r"\1", answer)
    answer = re.sub(r"frac([^{])(.)", r"frac{\1}{\2}", answer)  # \frac12 -> \frac{1}{2}
    answer = re.sub(r"sqrt([^{])", r"sqrt{\1}", answer)  # \sqrt2 -> \sqrt{2}
    answer = answer.replace("$", "")
    if answer.replace(",", "").isdigit():
        answer = answer.replace(",", "")
    return answer


class MajorityVoteTask(Task):
    """maj1@1 and maj1@k over generated solutions; subclasses give the prompt and answers."""

    table: ClassVar[str] = "Table 7: Quantitative reasoning"
    title: ClassVar[str]
    max_new_tokens: ClassVar[int] = 256
    stop: ClassVar[tuple[str, ...]] = ()

    def __init__(self, samples: int = 8, temperature: float = 0.6, top_p: float = 0.95):
        if samples < 0 or samples == 1:
            raise ConfigError(
                f"task {self.name}: samples must be 0 (greedy only) or >= 2 (maj1@1 is the "
                f"greedy score), got {samples}"
            )
        self.samples, self.temperature, self.top_p = samples, temperature, top_p

    def prompt(self, doc: dict, examples: list[tuple[str, str]]) -> str:
        raise NotImplementedError

    def examples(
        self, doc: dict, fewshot_docs: list[dict], shots: int, rng: random.Random
    ) -> list[tuple[str, str]]:
        """(question, worked solution) pairs for the prompt."""
        raise NotImplementedError

    def extract(self, completion: str) -> str | None:
        raise NotImplementedError

    def gold(self, doc: dict) -> str:
        raise NotImplementedError

    def score(self, docs: list[dict], completions: list[list[str]], k: int) -> float:
        """maj1@k of the first ``k`` completions of each document."""
        answers = [[self.extract(c) for c in per_doc] for per_doc in completions]
        return maj_at_k(answers, [self.gold(doc) for doc in docs], k)

    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        if not docs:
            raise DataError(f"task {self.name}: no documents to evaluate")
        for doc in docs:  # a bad reference answer stops the run before any generation
            self.gold(doc)
        budget = prompt_token_budget(
            context_length(ctx.model, ctx.max_seq_len), self.max_new_tokens
        )
        rng = random.Random(ctx.seed)
        prompts = []
        for doc in docs:
            examples = self.examples(doc, fewshot_docs, shots, rng)
            build = lambda k, d=doc, e=examples: self.prompt(d, e[:k])  # noqa: E731
            prompts.append(fit_shots(ctx.tokenizer, build, shots, budget)[0])
        base = SamplingConfig(max_new_tokens=self.max_new_tokens, stop=self.stop, seed=ctx.seed)
        runs = {1: base}
        if self.samples:
            runs[self.samples] = SamplingConfig(
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                stop=self.stop,
                seed=ctx.seed,
            )
        results = {}
        for k, cfg in runs.items():
            completions = generate_completions(
                ctx.model,
                ctx.tokenizer,
                prompts,
                cfg,
                n=k,
                batch_size=ctx.batch_size,
                max_seq_len=ctx.max_seq_len,
                progress=ctx.progress,
            )
            results[f"maj1@{k}"] = self.score(docs, completions, k)
        return results


@register_task
class GSM8k(MajorityVoteTask):
    name = "gsm8k"
    title = "GSM8k"
    dataset = DatasetSpec("openai/gsm8k", "main", "test", "train")
    default_shots = 8
    stop = ("\n\n", "Q:")

    def prompt(self, doc: dict, examples: list[tuple[str, str]]) -> str:
        shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in examples)
        return f"{shots}Q: {text_field(self.name, doc, 'question')}\nA:"

    def needs_fewshot_docs(self, shots: int) -> bool:
        return shots > len(GSM8K_EXEMPLARS)

    def examples(self, doc, fewshot_docs, shots, rng):
        if shots <= len(GSM8K_EXEMPLARS):
            return list(GSM8K_EXEMPLARS[:shots])
        drawn = draw_shots(fewshot_docs, shots, rng, exclude=doc)
        return [(text_field(self.name, d, "question"), self.worked_solution(d)) for d in drawn]

    def worked_solution(self, doc: dict) -> str:
        """A training answer in the exemplars' style: one paragraph ending in "The answer is n."."""
        reasoning, _, final = text_field(self.name, doc, "answer").rpartition("####")
        steps = " ".join(_CALCULATOR.sub("", reasoning).split())
        return f"{steps} The answer is {final.strip()}."

    def extract(self, completion: str) -> str | None:
        return extract_number(completion)

    def gold(self, doc: dict) -> str:
        answer = text_field(self.name, doc, "answer")
        number = exact_number(answer.rpartition("####")[2]) if "####" in answer else None
        if number is None:
            raise DataError(
                f"{located(doc)}task {self.name}: answer {answer[-80:]!r} does not end in "
                "'#### <number>' (GSM8k's reference format)"
            )
        return number


@register_task
class MATH(MajorityVoteTask):
    name = "math"
    title = "MATH"
    dataset = DatasetSpec("hendrycks/competition_math", None, "test", "train")
    default_shots = 4
    stop = ("Problem:",)
    max_new_tokens = 512

    def prompt(self, doc: dict, examples: list[tuple[str, str]]) -> str:
        shots = "".join(f"Problem:\n{q}\n\nSolution: {a}\n\n" for q, a in examples)
        return f"{shots}Problem:\n{text_field(self.name, doc, 'problem')}\n\nSolution:"

    def examples(self, doc, fewshot_docs, shots, rng):
        drawn = draw_shots(fewshot_docs, shots, rng, exclude=doc)
        return [
            (text_field(self.name, d, "problem"), text_field(self.name, d, "solution"))
            for d in drawn
        ]

    def extract(self, completion: str) -> str | None:
        boxed = last_boxed(completion)
        if boxed is None:
            found = _FINAL_ANSWER.findall(completion)
            boxed = found[-1] if found else None
        return None if boxed is None else normalize_math_answer(boxed)

    def gold(self, doc: dict) -> str:
        boxed = last_boxed(text_field(self.name, doc, "solution"))
        if boxed is None or not boxed.strip():
            raise DataError(
                f"{located(doc)}task {self.name}: the solution has no \\boxed{{...}} final "
                "answer (MATH's reference format)"
            )
        gold = normalize_math_answer(boxed)
        if not gold.strip():  # \boxed{\$} is "", which an empty \boxed{ } would match
            raise DataError(
                f"{located(doc)}task {self.name}: the final answer \\boxed{{{boxed[:80]}}} is "
                "empty after normalisation and would match an empty answer"
            )
        return gold
