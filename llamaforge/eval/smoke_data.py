"""A tiny offline evaluation set in the benchmarks' own schemas: a smoke set, not a benchmark.

Benchmarks cannot be downloaded here, yet ``llamaforge eval --data-dir`` and
the lm-eval example should run on a fresh clone. :func:`write_smoke_set`
writes a handful of hand-written items per task, in exactly the fields of the
Hugging Face datasets the loaders read (:mod:`llamaforge.eval.tasks`), laid out
as ``DIR/<task>/<split>.jsonl``:

* ``boolq`` (``aps/super_glue`` boolq): ``passage``, ``question``, ``label``
  (0 = no, 1 = yes); validation and train;
* ``piqa`` (``baber/piqa``): ``goal``, ``sol1``, ``sol2``, ``label``;
* ``hellaswag`` (``Rowan/hellaswag``): ``activity_label``, ``ctx_a``, ``ctx_b``,
  ``ctx``, ``endings``, ``label`` (a string, as on the Hub);
* ``arc_easy`` (``allenai/ai2_arc`` ARC-Easy): ``id``, ``question``,
  ``choices {text, label}``, ``answerKey``; test and train;
* ``triviaqa`` (``mandarjoshi/trivia_qa`` rc.nocontext): ``question``,
  ``question_id``, ``answer {value, aliases, normalized_value, ...}``.

The scored split is each task's reported one (validation, or test for ARC);
a small train split is written too so ``--shots 1`` finds a few-shot pool.
The items are few and easy, written for this project: numbers on them say
that the pipeline runs end to end, not how good a model is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SMOKE_TASKS = ("boolq", "piqa", "hellaswag", "arc_easy", "triviaqa")

_BOOLQ = [
    ("Water boils at 100 degrees Celsius at sea level.", "does water boil at 100 degrees celsius", 1),
    ("The Pacific is the largest ocean on Earth.", "is the atlantic the largest ocean", 0),
    ("Python is a programming language created by Guido van Rossum.", "is python a programming language", 1),
    ("Cats are mammals and are often kept as pets.", "are cats reptiles", 0),
    ("The Sun rises in the east and sets in the west.", "does the sun rise in the east", 1),
    ("Ice is frozen water and melts when it gets warm.", "does ice stay frozen when it is warm", 0),
    ("A week has seven days.", "does a week have seven days", 1),
    ("Paris is the capital city of France.", "is london the capital of france", 0),
]  # fmt: skip
_PIQA = [
    ("To open a jar with a tight lid,", "run the lid under hot water, then twist it.", "put the jar in the freezer overnight.", 0),
    ("To dry wet hands,", "wave them in a bucket of water.", "rub them with a clean towel.", 1),
    ("To keep bread fresh,", "store it in a closed bag.", "leave it open in the sun.", 0),
    ("To read a book at night,", "turn off all the lights.", "turn on a lamp.", 1),
    ("To cool a hot drink quickly,", "add a few ice cubes.", "put it on the stove.", 0),
    ("To water a plant,", "pour water into its soil.", "pour sand on its leaves.", 0),
    ("To sharpen a pencil,", "put it in a pencil sharpener.", "put it in a glass of milk.", 0),
    ("To find a word in a dictionary,", "read it from the last page backwards.", "look it up in alphabetical order.", 1),
]  # fmt: skip
_HELLASWAG = [
    ("Cooking", "A man puts a pan on the stove.", "he", ["cracks two eggs into the pan.", "sings to the moon.", "throws the pan into a lake.", "paints the ceiling blue."], 0),
    ("Running", "A woman ties her shoes at the start of a track.", "she", ["eats the shoes.", "starts to run around the track.", "falls asleep on the roof.", "opens an umbrella indoors."], 1),
    ("Washing dishes", "A boy fills the sink with warm soapy water.", "he", ["plants a tree in it.", "reads a newspaper to it.", "washes the plates and cups.", "drives a car into it."], 2),
    ("Playing guitar", "A man sits down holding a guitar.", "he", ["tunes the strings and starts playing.", "bakes the guitar in an oven.", "mails the guitar to the moon.", "swims with the guitar."], 0),
    ("Gardening", "A woman kneels beside a flower bed with a trowel.", "she", ["flies over the city.", "orders a pizza from the trowel.", "knits a sweater for the trowel.", "digs a small hole and plants a flower."], 3),
    ("Painting", "A girl dips a brush into red paint.", "she", ["paints a stroke across the canvas.", "drinks the paint.", "throws the brush into the sea.", "hides the canvas in a fridge."], 0),
]  # fmt: skip
_ARC = [
    ("Which of these is a source of light?", ["a rock", "the Sun", "a spoon", "a shoe"], "B"),
    ("What do plants need to make their own food?", ["sunlight", "plastic", "sand", "metal"], "A"),
    ("Which state of matter has a fixed shape?", ["gas", "liquid", "solid", "steam"], "C"),
    ("What force pulls objects toward the ground?", ["magnetism", "friction", "wind", "gravity"], "D"),
    ("Which animal lays eggs?", ["a chicken", "a dog", "a cat", "a horse"], "A"),
    ("What is the main gas in the air we breathe out that plants use?", ["helium", "carbon dioxide", "neon", "gold"], "B"),
    ("Which tool is used to measure temperature?", ["a ruler", "a scale", "a thermometer", "a clock"], "C"),
    ("What happens to water when it freezes?", ["it boils", "it turns to ice", "it turns to gas", "it disappears"], "B"),
]  # fmt: skip
_TRIVIA = [
    ("What is the capital of France", "Paris", ["Paris, France"]),
    ("How many days are there in a week", "seven", ["7", "Seven"]),
    ("Which planet is known as the Red Planet", "Mars", ["Planet Mars"]),
    ("What colour is the sky on a clear day", "blue", ["Blue"]),
    ("Who wrote the play Romeo and Juliet", "William Shakespeare", ["Shakespeare"]),
    ("What is frozen water called", "ice", ["Ice"]),
    ("Which programming language is named after Monty Python", "Python", ["python"]),
    ("What is the largest ocean on Earth", "Pacific Ocean", ["Pacific", "The Pacific"]),
]  # fmt: skip


def _boolq(rows):
    return [{"passage": p, "question": q, "label": y, "idx": i} for i, (p, q, y) in enumerate(rows)]


def _piqa(rows):
    return [{"goal": g, "sol1": a, "sol2": b, "label": y} for g, a, b, y in rows]


def _hellaswag(rows):
    return [
        {"ind": i, "activity_label": act, "ctx_a": a, "ctx_b": b, "ctx": f"{a} {b}",
         "endings": endings, "source_id": f"smoke~{i}", "split": "val", "split_type": "indomain",
         "label": str(y)}
        for i, (act, a, b, endings, y) in enumerate(rows)
    ]  # fmt: skip


def _arc(rows):
    return [
        {"id": f"smoke-{i}", "question": q,
         "choices": {"text": texts, "label": list("ABCD"[: len(texts)])}, "answerKey": key}
        for i, (q, texts, key) in enumerate(rows)
    ]  # fmt: skip


def _trivia(rows):
    out = []
    for i, (q, value, aliases) in enumerate(rows):
        normalized = [a.lower() for a in [value, *aliases]]
        answer = {"aliases": aliases, "normalized_aliases": normalized[1:], "value": value,
                  "normalized_value": value.lower(), "type": "FreeForm", "matched_wiki_entity_name": ""}  # fmt: skip
        out.append(
            {"question": q, "question_id": f"smoke_{i}", "question_source": "", "answer": answer}
        )
    return out


# task -> (scored split, builder, rows); the last two rows of each go to "train".
_TASKS = {
    "boolq": ("validation", _boolq, _BOOLQ),
    "piqa": ("validation", _piqa, _PIQA),
    "hellaswag": ("validation", _hellaswag, _HELLASWAG),
    "arc_easy": ("test", _arc, _ARC),
    "triviaqa": ("validation", _trivia, _TRIVIA),
}
N_TRAIN = 2


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, path)


def write_smoke_set(out_dir: str | os.PathLike) -> dict[str, int]:
    """Write ``out_dir/<task>/<split>.jsonl`` for :data:`SMOKE_TASKS`; return task -> scored items.

    Each file is written atomically; rewriting gives the same bytes, so calling
    it on every demo run is harmless.
    """
    out = Path(out_dir)
    counts = {}
    for task, (split, build, rows) in _TASKS.items():
        records = build(rows)
        scored, pool = records[:-N_TRAIN], records[-N_TRAIN:]
        _write(out / task / f"{split}.jsonl", scored)
        _write(out / task / "train.jsonl", pool)
        counts[task] = len(scored)
    return counts
