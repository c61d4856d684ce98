import re
import subprocess
import sys

import fasttext
import pytest

from llamaforge.data.ccnet.fasttext_io import label_scores, load_fasttext
from llamaforge.errors import ConfigError
from tests.data.ccnet.conftest import offsets, patch

FIELD = "[sources.commoncrawl].lid_model"


def _heap_corrupting(data: bytes) -> bytes:
    """The red-team edit: the input matrix header set to m = 2**17, n = 2**12.

    Handed to fastText 0.9.2 it aborts the process with "double free or
    corruption" (or "free(): invalid size").
    """
    return patch(data, offsets(data).input_m, "qq", 2**17, 2**12)


def test_sound_models_load_and_predict(fasttext_models):
    for path in fasttext_models.values():
        scores = label_scores(load_fasttext(path, FIELD), "der die und das ist nicht")
        assert set(scores) == {"en", "de", "fr"}
        assert max(scores, key=scores.get) == "de"


def test_damaged_models_never_reach_fasttext(fasttext_models, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fasttext, "load_model", lambda path: calls.append(path))
    data = fasttext_models["dense"].read_bytes()
    o = offsets(data)
    for name, damaged in {
        "heap.bin": _heap_corrupting(data),
        "nonul.bin": data[: o.first_entry] + b"x" * 400,
        "dim.bin": patch(data, 8, "i", 2),
        "cut.ftz": fasttext_models["pruned"].read_bytes()[:-1],
    }.items():
        path = tmp_path / name
        path.write_bytes(damaged)
        with pytest.raises(ConfigError, match=re.escape(f"{path} is damaged")) as caught:
            load_fasttext(path, FIELD)
        assert str(caught.value).startswith(FIELD)
    assert calls == []


_LOAD = """
import sys
from llamaforge.data.ccnet.fasttext_io import label_scores, load_fasttext
from llamaforge.errors import ConfigError
try:
    model = load_fasttext(sys.argv[1], "lid_model")
except ConfigError as error:
    print("refused:", error)
else:
    print("loaded:", label_scores(model, "der die und das"))
"""


def test_heap_corrupting_model_is_refused_and_the_process_survives(fasttext_models, tmp_path):
    # In a child process: if the check ever let this file through, fastText
    # would abort that process, not pytest.
    path = tmp_path / "mid.bin"
    path.write_bytes(_heap_corrupting(fasttext_models["dense"].read_bytes()))
    done = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused: lid_model:")
    assert "input matrix data (131072 x 4096 float32)" in done.stdout


@pytest.mark.parametrize(
    "error", [MemoryError("std::bad_alloc"), RuntimeError("vector::_M_default_append")]
)
def test_loader_errors_become_config_errors(fasttext_models, monkeypatch, error):
    def fail(path):
        raise error

    monkeypatch.setattr(fasttext, "load_model", fail)
    path = fasttext_models["dense"]
    with pytest.raises(ConfigError) as caught:
        load_fasttext(path, FIELD)
    message = str(caught.value)
    assert message.startswith(f"{FIELD}: fastText could not load {path}")
    assert type(error).__name__ in message and "damaged or not a fastText model" in message
