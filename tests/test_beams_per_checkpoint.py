"""Beam width chosen per checkpoint (issue 42.1): a trial trains once, scores every width its space lists, reports
the best and records which width won; the sampler proposes only what changes training."""

from __future__ import annotations

import json
import sqlite3

import pytest

from study.config import Config, StudyError
from study.data.prepared import prepare_data
from study.training.loop import fit
from study.tuning.space import parse_search_space
from tests.conftest import study_argv
from tests.test_train import SMALL, write_pairs

SPACE = {"search": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2},
                    "num_beams": {"distribution": "choice", "values": [1, 4]}},
         "start": [{"lr": 1e-3}]}


def test_a_space_scores_beams_per_checkpoint_unless_told_to_sample_them():
    space = parse_search_space(SPACE, "t.yaml")
    assert space.beam_widths() == (1, 4)
    assert set(space.tune_space()) == {"lr"}  # the sampler proposes lr alone
    assert space.trial_base() == {"val_beams": (1, 4)}
    assert space.start_points() == [{"lr": 1e-3}]
    assert set(space.tune_space(trains=False)) == {"lr", "num_beams"}  # a regime that trains nothing samples it
    sampled = parse_search_space({**SPACE, "beams": "sampled", "start": [{"lr": 1e-3, "num_beams": 4}]}, "t.yaml")
    assert sampled.beam_widths() == () and set(sampled.tune_space()) == {"lr", "num_beams"}
    one = parse_search_space({"search": {"num_beams": {"distribution": "choice", "values": [4]}}}, "t.yaml")
    assert one.beam_widths() == ()  # one width: nothing to choose
    with pytest.raises(StudyError, match="beams must be one of per_checkpoint, sampled"):
        parse_search_space({**SPACE, "beams": "both"}, "t.yaml")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("beams")
    config = Config(data=str(write_pairs(root / "pairs.tsv", 300)), cache_dir=str(root / "cache"),
                    **{**SMALL, "regime": "scratch"})
    return config, prepare_data(config)


def test_a_trial_reports_its_best_width_and_trains_as_a_greedy_trial_does(small):
    config, data = small
    both: list[dict] = []
    fit(config.replace(val_beams=(1, 2)), data, lambda m, save: both.append(m))
    greedy: list[dict] = []
    fit(config.replace(num_beams=1), data, lambda m, save: greedy.append(m))
    assert len(both) == len(greedy) == config.epochs
    for b, g in zip(both, greedy):
        widths = {1: b["val_bleu_beam1"], 2: b["val_bleu_beam2"]}
        assert b["val_bleu"] == max(widths.values())
        assert b["num_beams_best"] == min(w for w, bleu in widths.items() if bleu == b["val_bleu"])
        assert b["val_bleu_greedy"] == b["val_bleu_beam1"]
        # scoring a second width changes nothing about training: the same losses and greedy BLEU as a greedy trial
        assert b["train_loss"] == g["train_loss"] and b["val_loss"] == g["val_loss"]
        assert b["val_bleu_beam1"] == g["val_bleu"]


@pytest.mark.slow
def test_a_study_records_the_width_each_trial_chose(tmp_path, study_pairs):
    """A real Tune search: Optuna never proposes num_beams, yet each trial's width is in optuna.db (user attribute)
    and the analysis tables, and best.json carries the width its best epoch chose."""
    from study.analyze import load
    from study.run import main as run_main

    space = tmp_path / "space.yaml"
    space.write_text("search:\n  lr: {distribution: choice, values: [3.0e-3, 1.0e-3]}\n"
                     "  num_beams: {distribution: choice, values: [1, 2]}\nfixed: {batch_size: 16}\n", encoding="utf-8")
    argv = study_argv(study_pairs, tmp_path / "results", "beams", space, 2, 2, study_pairs.parent / "cache")
    assert run_main(argv) == 0
    folder = tmp_path / "results" / "beams"
    with sqlite3.connect(folder / "optuna.db") as conn:
        params = {name for (name,) in conn.execute("SELECT DISTINCT param_name FROM trial_params")}
        widths = dict(conn.execute("SELECT trial_id, value_json FROM trial_user_attributes WHERE key = 'num_beams'"))
    assert params == {"lr"}
    assert len(widths) == 2 and {json.loads(w) for w in widths.values()} <= {1, 2}
    a = load(folder)
    best = json.loads((folder / "scratch" / "best.json").read_text())
    trial = a.trials[a.trials["trial_id"] == best["trial_id"]].iloc[0]
    epochs = a.epochs[a.epochs["trial_id"] == best["trial_id"]]
    at_best = epochs[epochs["epoch"] == best["best_epoch"]].iloc[0]
    assert best["num_beams"] == int(at_best["num_beams_best"]) == int(trial["num_beams"])
