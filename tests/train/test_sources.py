"""Where a run's data and start come from: the finetuning errors and the data report file."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from llamaforge.errors import ConfigError, LlamaforgeError
from llamaforge.train.config import TrainConfig
from llamaforge.train.sources import (
    _why_none_left,
    check_data_report_path,
    start_point,
    write_data_report,
)


def test_why_none_left_names_what_would_help_for_each_length_rule() -> None:
    dropped = _why_none_left(Counter(dropped_too_long=3, examples=0), 128)
    assert 'finetune.overlong = "truncate"' in dropped and "data.seq_len = 128" in dropped
    # Truncation (the default) already ran: advising it would send the user in a circle.
    cut = _why_none_left(Counter(dropped_no_response_left=3, examples=0), 128)
    assert "overlong" not in cut and "prompts alone fill data.seq_len = 128" in cut
    assert "raise data.seq_len" in cut and "shorten the prompts" in cut
    assert "finetune.template" in _why_none_left(Counter(not_in_template=2), 128)


@pytest.mark.parametrize("files", [{}, {"notes.txt": "x"}], ids=["empty", "no-model"])
def test_an_init_folder_of_no_known_format_says_what_it_must_hold(tmp_path, files) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cfg = TrainConfig.from_dict(
        {"train": {"max_steps": 1}, "finetune": {"data": "x.jsonl", "init": str(tmp_path)}}
    )
    with pytest.raises(ConfigError) as refused:
        start_point(cfg)
    message = str(refused.value)
    assert message.startswith(f"finetune.init {str(tmp_path)!r} is not a model folder")
    assert "--from" not in message  # a `convert` flag: finetune has none
    assert "Hugging Face folder" in message and "params.json" in message
    assert ("it is empty" in message) == (not files)


def test_a_folder_where_the_data_report_goes_is_refused_and_left_alone(tmp_path) -> None:
    (tmp_path / "finetune_data.json" / "mine").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"finetune_data\.json exists and is not a file"):
        check_data_report_path(tmp_path)
    check_data_report_path(tmp_path / "new-run")  # nothing there yet: fine
    with pytest.raises(LlamaforgeError, match=r"finetune_data\.json cannot be written") as error:
        write_data_report(tmp_path, {"read": {"records": 1}})  # were the check skipped
    assert "Traceback" not in str(error.value) and "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetune_data.json"]  # no .tmp left
    assert (tmp_path / "finetune_data.json" / "mine").is_dir()


def test_the_data_report_replaces_its_earlier_version_whole(tmp_path) -> None:
    write_data_report(tmp_path, {"read": {"records": 1}})
    write_data_report(tmp_path, {"read": {"records": 2}})
    assert json.loads((tmp_path / "finetune_data.json").read_text()) == {"read": {"records": 2}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetune_data.json"]
