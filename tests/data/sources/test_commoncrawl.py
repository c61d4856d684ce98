import pickle
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from llamaforge.data.ccnet.warc import iter_pages
from llamaforge.data.samples.commoncrawl import sample_config, write_samples
from llamaforge.data.sources.base import FilterReport, config_from_table
from llamaforge.data.sources.commoncrawl import CommonCrawlConfig, CommonCrawlSource
from llamaforge.errors import ConfigError

EXPECTED_DROP = {
    "german": "lang",
    "french": "lang",
    "salad": "ccnet.perplexity",
    "shop": "ccnet.wikiref",
    "boilerplate": "dedup.line",
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cc")
    paths = write_samples(directory, n_docs=20, seed=0)
    return directory, paths


@pytest.fixture(scope="module")
def config(samples):
    return CommonCrawlConfig(**sample_config(samples[0]))


def run(config, path):
    report = FilterReport()
    return list(CommonCrawlSource(config).process(path, report)), report


def kind_of(url):
    return url.split("//")[1].split(".")[0]


def test_wet_shard_keeps_good_pages_and_drops_each_kind_for_its_reason(samples, config):
    wet = samples[1][0]
    kinds = Counter(kind_of(page.url) for page in iter_pages(wet, FilterReport()))
    docs, report = run(config, wet)
    assert sorted(kind_of(d.id) for d in docs) == ["good"] * kinds["good"]
    expected = Counter()
    for kind, reason in EXPECTED_DROP.items():
        expected[reason] += kinds[kind]
    assert report.dropped_docs == expected
    assert report.kept_docs == kinds["good"] >= 5
    assert not report.bad_input


def test_kept_documents_carry_provenance_and_lose_boilerplate_lines(samples, config):
    wet = samples[1][0]
    docs, _ = run(config, wet)
    for doc in docs:
        assert doc.source == "commoncrawl" and doc.id.startswith("https://good.example.org/")
        assert "rights reserved" not in doc.text.lower() and "cookies" not in doc.text
        meta = doc.meta
        assert meta["warc_file"] == wet.name and meta["record_id"].startswith("<urn:uuid:")
        assert meta["filters"] == ["line_dedup", "lang", "perplexity", "wikiref"]
        assert meta["language"] == "en" and meta["lang_score"] >= config.lang_threshold
        assert meta["bucket"] in ("head", "middle")
        assert meta["wikiref_score"] >= config.wikiref_threshold
        assert meta["dedup_lines_removed"] == 3
    assert {d.meta["bucket"] for d in docs} == {"head", "middle"}


def test_warc_html_shard(samples, config):
    docs, report = run(config, samples[1][1])
    assert sorted(kind_of(d.id) for d in docs) == ["html"] * 4 + ["latin1"]
    latin = next(d for d in docs if kind_of(d.id) == "latin1")
    assert "Café" in latin.text and "très" in latin.text
    assert report.dropped_docs == {"cc.http_status": 1, "cc.not_html": 1}
    assert report.bad_input == {"utf8": 1}


def test_truncated_shard_keeps_pages_before_the_fault(samples, config):
    docs, report = run(config, samples[1][2])
    assert [d.id for d in docs] == [f"https://truncated.example.org/{i}" for i in range(2)]
    assert report.bad_input == {"truncated": 1}


def test_stricter_settings_drop_more_for_the_right_reason(samples, config):
    wet = samples[1][0]
    base_docs, base = run(config, wet)
    middle = sum(d.meta["bucket"] == "middle" for d in base_docs)
    head_only_docs, head_only = run(replace(config, keep_buckets=["head"]), wet)
    assert {d.meta["bucket"] for d in head_only_docs} == {"head"}
    assert (
        head_only.dropped_docs["ccnet.perplexity"] == base.dropped_docs["ccnet.perplexity"] + middle
    )
    docs, strict = run(replace(config, wikiref_threshold=1.0), wet)
    assert docs == [] and strict.dropped_docs["ccnet.wikiref"] == base.kept_docs + 2
    docs, strict = run(replace(config, lang_threshold=1.0), wet)
    assert docs == [] and strict.dropped_docs["lang"] == base.kept_docs + 2 + 3 + 2


def test_language_list_and_switched_off_stages(samples, config):
    wet = samples[1][0]
    german = replace(config, languages=["de"], perplexity_filter=False, wikiref_filter=False)
    docs, _ = run(german, wet)
    assert {kind_of(d.id) for d in docs} == {"german"}
    assert all(d.meta["filters"] == ["line_dedup", "lang"] for d in docs)
    assert all("perplexity" not in d.meta and "wikiref_score" not in d.meta for d in docs)
    no_dedup = replace(german, languages=["en"], line_dedup=False)
    docs, report = run(no_dedup, wet)
    assert "dedup.line" not in report.dropped_docs
    assert any("All rights reserved" in d.text for d in docs)


def test_source_pickles_and_lists_only_archives(samples, config):
    directory, paths = samples
    source = CommonCrawlSource(config)
    first = list(source.process(paths[0], FilterReport()))
    clone = pickle.loads(pickle.dumps(source))
    assert [d.to_json() for d in clone.process(paths[0], FilterReport())] == [
        d.to_json() for d in first
    ]
    assert source.list_inputs(directory) == paths
    assert source.list_inputs(paths[0]) == [paths[0]]


def test_default_cutoffs_are_ccnets_per_language_table(samples):
    table = {**sample_config(samples[0]), "perplexity_cutoffs": []}
    config = CommonCrawlConfig(**{**table, "languages": ["en", "de"]})
    assert config.cutoffs_for("en") == (340.0, 520.0)  # cc_net cutoff.csv, p30 / p60
    assert config.cutoffs_for("de") == (370.0, 590.0)
    assert CommonCrawlConfig(**table, perplexity_percentiles=[0, 1]).cutoffs_for("en") == (
        0.0,
        160.0,
    )
    with pytest.raises(ConfigError, match=r"perplexity_cutoffs.*has no tlh"):
        CommonCrawlConfig(**{**table, "languages": ["en", "tlh"]})
    with pytest.raises(ConfigError, match="perplexity_percentiles"):
        CommonCrawlConfig(**table, perplexity_percentiles=[60, 30])


def test_config_errors_name_the_field(samples, tmp_path):
    table = sample_config(samples[0])
    with pytest.raises(ConfigError, match=r"\[sources.commoncrawl\].lang_threshold"):
        CommonCrawlConfig(**{**table, "lang_threshold": 1.5})
    with pytest.raises(ConfigError, match="keep_buckets"):
        CommonCrawlConfig(**{**table, "keep_buckets": ["best"]})
    with pytest.raises(ConfigError, match="perplexity_cutoffs"):
        CommonCrawlConfig(**{**table, "perplexity_cutoffs": [50.0, 10.0]})
    with pytest.raises(ConfigError, match=r"lm_model .*perplexity_filter = false"):
        CommonCrawlConfig(**{**table, "lm_model": str(tmp_path / "missing.arpa")})
    with pytest.raises(ConfigError, match="wikiref_model is not set"):
        CommonCrawlConfig(**{**table, "wikiref_model": ""})
    assert CommonCrawlConfig(**{**table, "wikiref_model": "", "wikiref_filter": False})
    with pytest.raises(ConfigError, match="unknown field"):
        config_from_table(CommonCrawlConfig, {**table, "lang_treshold": 0.5}, "sources.commoncrawl")


def test_samples_are_deterministic(samples, tmp_path):
    again = write_samples(tmp_path, n_docs=20, seed=0)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in samples[1]]
    assert (
        sample_config(tmp_path)["perplexity_cutoffs"]
        == sample_config(samples[0])["perplexity_cutoffs"]
    )


def test_perplexity_filter_false_alone_is_enough_without_a_model_or_cutoffs(samples, tmp_path):
    """The missing-lm_model error says "or set perplexity_filter = false": that must work."""
    table = {**sample_config(samples[0]), "perplexity_cutoffs": [], "lm_model": ""}
    with pytest.raises(ConfigError, match=r"lm_model is not set.*perplexity_filter = false"):
        CommonCrawlConfig(**table)
    config = CommonCrawlConfig(**{**table, "perplexity_filter": False})
    assert config.perplexity_filter is False and config.perplexity_cutoffs == []
    # A language CCNet's table lacks needs no cutoffs when the stage is off...
    assert CommonCrawlConfig(**{**table, "perplexity_filter": False, "languages": ["tlh"]})
    # ... but given cutoffs are still checked, and must be a list.
    for cutoffs in ([50.0, 10.0], [1.0], 5):
        with pytest.raises(ConfigError, match=r"perplexity_cutoffs must be \[head_max"):
            CommonCrawlConfig(
                **{**table, "perplexity_filter": False, "perplexity_cutoffs": cutoffs}
            )


def test_damaged_models_are_refused_once_by_the_config_before_any_worker_loads_them(
    samples, tmp_path
):
    """A model file cut short is one ConfigError naming the field, not a failure per input."""
    table = sample_config(samples[0])
    for field in ("lid_model", "lm_model"):
        damaged = tmp_path / f"damaged-{field}"
        damaged.write_bytes(Path(table[field]).read_bytes()[:200])
        with pytest.raises(ConfigError, match=rf"\[sources.commoncrawl\]\.{field}: .*damaged"):
            CommonCrawlConfig(**{**table, field: str(damaged)})
