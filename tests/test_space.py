"""Search-space files: every kind of mistake `study.tuning.space` knows is one StudyError naming the file and
what to change, before anything runs; through `study.run` it is one `error:` line and nothing is written."""

from __future__ import annotations

import pytest

from study.config import StudyError
from study.run import main as run_main
from study.tuning.space import load_search_space

GOOD = "search:\n  lr: {distribution: loguniform, low: 1.0e-4, high: 3.0e-3}\n"

# (file text, what the one-line error must say): one row per check in study/tuning/space.py.
MISTAKES = {
    "not a mapping": ("- lr\n- batch_size\n", "must be a mapping with sections search, fixed, asha"),
    "unknown section": (GOOD + "grid: {}\n", "unknown section(s) ['grid']"),
    "section not a mapping": ("search: [lr]\n", "search, fixed and asha must each be a mapping"),
    "not per-trial": ("search:\n  tiny_d_model: {distribution: choice, values: [64]}\n",
                      "cannot search 'tiny_d_model': it is not a per-trial setting"),
    "no distribution": ("search:\n  lr: {low: 1, high: 2}\n", "lr needs a mapping with a 'distribution' key"),
    "unknown distribution": ("search:\n  lr: {distribution: normal, low: 1, high: 2}\n",
                             "lr: unknown distribution 'normal'"),
    "wrong keys": ("search:\n  lr: {distribution: uniform, low: 1.0e-4, hi: 1.0e-3}\n",
                   "lr (uniform) takes keys ['distribution', 'high', 'low']; unknown ['hi'], missing ['high']"),
    "empty choice": ("search:\n  num_beams: {distribution: choice, values: []}\n",
                     "num_beams: choice needs a non-empty list of values"),
    "not a number": ("search:\n  lr: {distribution: uniform, low: small, high: 1.0e-3}\n",
                     "lr.low must be a finite number, got 'small'"),
    "infinite": ("search:\n  lr: {distribution: uniform, low: 1.0e-4, high: .inf}\n",
                 "lr.high must be a finite number, got inf"),
    "low not below high": ("search:\n  lr: {distribution: uniform, low: 1.0e-3, high: 1.0e-4}\n",
                           "lr: low (0.001) must be below high (0.0001)"),
    "loguniform from 0": ("search:\n  lr: {distribution: loguniform, low: 0, high: 1}\n",
                          "lr: loguniform bounds must be positive, got low=0"),
    "randint not whole": ("search:\n  batch_size: {distribution: randint, low: 8.5, high: 64}\n",
                          "batch_size: randint bounds must be whole numbers"),
    "fixed not per-trial": (GOOD + "fixed: {model: t5-small}\n", "fixed setting 'model' is not a per-trial Config field"),
    "searched and fixed": (GOOD + "fixed: {lr: 1.0e-3}\n", "lr is both searched and fixed"),
    "unknown asha key": (GOOD + "asha: {grace: 1}\n", "unknown asha key 'grace'; allowed: grace_period, reduction_factor"),
    "asha not a whole number": (GOOD + "asha: {grace_period: 1.5}\n", "asha.grace_period must be a positive whole number, got 1.5"),
    "asha zero": (GOOD + "asha: {grace_period: 0}\n", "asha.grace_period must be a positive whole number, got 0"),
    "reduction factor 1": (GOOD + "asha: {reduction_factor: 1}\n", "asha.reduction_factor must be at least 2"),
    "fixed value invalid": (GOOD + "fixed: {batch_size: 0}\n", "fixed settings: batch_size must be positive, got 0"),
    "drawn value invalid": ("search:\n  num_beams: {distribution: choice, values: [1, 0]}\n",
                            "fixed settings: num_beams must be positive, got 0"),
    "not YAML": ("search: {lr: [\n", "not valid YAML"),
}


@pytest.mark.parametrize("text, needle", MISTAKES.values(), ids=MISTAKES.keys())
def test_every_mistake_in_a_search_space_is_one_clear_error(text, needle, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError) as raised:
        load_search_space(path)
    message = str(raised.value)
    assert message.startswith(f"invalid search space {path}: ") and needle in message, message
    assert "\n" not in message


def test_a_missing_search_space_file_is_named(tmp_path):
    with pytest.raises(StudyError, match=f"search space file not found: {tmp_path / 'nope.yaml'}"):
        load_search_space(tmp_path / "nope.yaml")


def test_a_good_space_loads(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(GOOD + "fixed: {batch_size: 16}\nasha: {grace_period: 2, reduction_factor: 3}\n", encoding="utf-8")
    space = load_search_space(path)
    assert space.search == {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 3e-3}}
    assert space.fixed == {"batch_size": 16} and space.asha == {"grace_period": 2, "reduction_factor": 3}


@pytest.mark.parametrize("kind", ["unknown section", "loguniform from 0", "searched and fixed"])
def test_the_study_refuses_a_bad_space_before_anything_runs(kind, tmp_path, capsys):
    text, needle = MISTAKES[kind]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    code = run_main(["--regime", "scratch", "--search-space", str(bad), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: invalid search space") and needle in err[0], err
    assert not (tmp_path / "results").exists()
