"""The search in trial order: the same proposals and the same early stops however the trials' reports interleave.

Regimes searched side by side share the trial slots, so which trial of a regime reports first changes from run to
run; Ray's OptunaSearch and ASHA decide by that order, and the same study at the same seed picked another
configuration. With `at_once` (the study's searches always pass it) Optuna proposes trial k knowing exactly trials
0 .. k - at_once finished, and ASHA judges trial n against trials n - at_once and earlier."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from study.tuning.searcher import (
    METRIC,
    MODE,
    AshaAwareOptunaSearch,
    make_sampler,
    make_scheduler,
    sampler_settings,
)
from study.tuning.space import parse_search_space

SPACE = {"search": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2},
                    "batch_size": {"distribution": "choice", "values": [16, 32]}},
         "fixed": {}, "asha": {"grace_period": 1, "reduction_factor": 2}}
EPOCHS, TRIALS = 3, 8


def _bleu(config: dict, epoch: int) -> float:
    """A made-up validation BLEU: best at lr 1e-3 and batch 16, growing with epochs."""
    return (10 - 3 * abs(math.log10(config["lr"]) + 3) - (1 if config["batch_size"] == 32 else 0)) * epoch / EPOCHS


class _Trial:
    def __init__(self, trial_id: str, number: int, config: dict) -> None:
        self.trial_id, self.experiment_tag, self.config = trial_id, f"{number}_lr={config['lr']}", config
        self.epoch, self.clock = 0, 0.0


def _search(seconds, at_once: int | None, concurrency: int = 2) -> tuple[list[dict], list[int], list[int], list[int]]:
    """A search driven as Tune's controller drives one (a free slot asks the searcher; every result goes to ASHA,
    then to the searcher unless stopped; an ended trial to both), each epoch of a trial lasting `seconds(config)`
    on a simulated clock. Returns the configurations in proposal order, the trials stopped early, how many
    trials Optuna had been told had ended when each was proposed, and the trials' numbers in reporting order."""
    searcher = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=EPOCHS, study_name="t",
                                     sampler=make_sampler(sampler_settings("tpe", "scratch", TRIALS, 0)),
                                     at_once=at_once, planned=TRIALS)
    searcher.set_search_properties(None, None, parse_search_space(SPACE, "t").tune_space())
    scheduler = make_scheduler(parse_search_space(SPACE, "t"), EPOCHS, None, None, at_once=at_once)
    running: dict[str, _Trial] = {}
    proposed, stopped, told, reports = [], [], [], []
    clock = 0.0
    while len(proposed) < TRIALS or running:
        while len(running) < concurrency and len(proposed) < TRIALS:
            trial_id = f"t{len(proposed)}"
            config = searcher.suggest(trial_id)
            if config is None:  # waiting for an earlier trial to end: Tune asks again after the next event
                break
            told.append(sum(t.state.is_finished() for t in searcher._ot_study.trials))
            proposed.append(config)
            trial = running[trial_id] = _Trial(trial_id, len(proposed), config)
            trial.clock = clock + seconds(config)
            scheduler.on_trial_add(None, trial)
        trial = min(running.values(), key=lambda t: (t.clock, t.trial_id))
        clock, trial.epoch = trial.clock, trial.epoch + 1
        reports.append(int(trial.experiment_tag.partition("_")[0]))
        result = {METRIC: _bleu(trial.config, trial.epoch), "val_bleu_greedy": _bleu(trial.config, trial.epoch),
                  "training_iteration": trial.epoch, "epoch": trial.epoch, "diverged": False}
        decision = scheduler.on_trial_result(None, trial, result)
        if decision == TrialScheduler.STOP or trial.epoch == EPOCHS:
            if trial.epoch < EPOCHS:
                stopped.append(int(trial.experiment_tag.partition("_")[0]))
            else:  # ASHA stops a trial at max_t itself; Tune tells it the trial ended
                scheduler.on_trial_complete(None, trial, result)
            searcher.on_trial_complete(trial.trial_id, result)
            del running[trial.trial_id]
        else:
            searcher.on_trial_result(trial.trial_id, result)
            trial.clock = clock + seconds(trial.config)
    return proposed, sorted(stopped), told, reports


def _fast_high_lr(config: dict) -> float:
    return 1.0 + math.log10(1e-2 / config["lr"])  # a trial at a higher lr finishes its epochs sooner


def _fast_low_lr(config: dict) -> float:
    return 1.0 + math.log10(config["lr"] / 1e-4)  # ... and here the other way round


def test_the_search_proposes_and_stops_the_same_trials_whichever_trial_reports_first():
    one = _search(_fast_high_lr, at_once=2)
    other = _search(_fast_low_lr, at_once=2)
    assert one[0] == other[0]  # the same configurations, in the same order
    assert one[1] == other[1]  # the same trials stopped early
    assert one[1], "ASHA stopped nothing: the test shows too little"
    assert one[3] != other[3], "the trials reported in the same order both times: the test shows nothing"
    # trial k was proposed knowing exactly trials 0 .. k - 2 had ended (the first two knowing none)
    assert one[2] == other[2] == [max(0, k - 1) for k in range(TRIALS)]


def test_every_trial_ends_up_told_to_optuna_in_trial_order():
    searcher = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=1, study_name="t",
                                     sampler=make_sampler(sampler_settings("random", "scratch", 3, 0)),
                                     at_once=2, planned=3)
    searcher.set_search_properties(None, None, parse_search_space(SPACE, "t").tune_space())
    assert searcher.suggest("a") and searcher.suggest("b")
    searcher.on_trial_complete("b", {METRIC: 2.0, "epoch": 1, "training_iteration": 1})
    assert searcher.suggest("c") is None  # c must know a's result: a still runs
    assert [t.state for t in searcher._ot_study.trials] == [optuna.trial.TrialState.RUNNING] * 2  # b not told yet
    searcher.on_trial_complete("a", {METRIC: 1.0, "epoch": 1, "training_iteration": 1})
    assert searcher.suggest("c")
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING,
                      optuna.trial.TrialState.RUNNING]  # c was proposed knowing a alone
    searcher.on_trial_complete("c", {METRIC: 3.0, "epoch": 1, "training_iteration": 1})  # all proposed: tell all
    assert [t.value for t in searcher._ot_study.trials] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("arrivals", [("1", "2", "3", "4"), ("2", "1", "4", "3")])
def test_asha_in_trial_order_judges_a_trial_against_the_trials_ended_before_it_started(arrivals):
    """Trial 3 is judged against trial 1 alone (5.0: stopped), trial 4 against 1 and 2 (cutoff 4.5: goes on),
    whichever arrived first; Ray's ASHA stops 2 and 3 in the first order and only 3 in the second."""
    bleu = {"1": 5.0, "2": 4.0, "3": 3.0, "4": 4.5}
    decisions = {}
    for ordered in (True, False):
        scheduler = make_scheduler(parse_search_space(SPACE, "t"), EPOCHS, None, None, at_once=2 if ordered else None)
        for number in arrivals:
            trial = _Trial(f"id{number}", int(number), {"lr": 1e-3})
            scheduler.on_trial_add(None, trial)
            decision = scheduler.on_trial_result(None, trial, {"training_iteration": 1, "val_bleu_greedy": bleu[number]})
            decisions[(ordered, number)] = decision
    assert sorted(n for (o, n), d in decisions.items() if o and d == TrialScheduler.STOP) == ["3"]
    plain = sorted(n for (o, n), d in decisions.items() if not o and d == TrialScheduler.STOP)
    assert plain == (["2", "3"] if arrivals[0] == "1" else ["3"])


def _report_slowly(config: dict, seconds) -> None:
    """A trainable reporting `_bleu` each epoch after `seconds(config)` tenths of a second."""
    import time

    from ray import tune

    for epoch in range(1, EPOCHS + 1):
        time.sleep(0.2 * seconds(config))
        bleu = _bleu(config, epoch)
        tune.report({METRIC: bleu, "val_bleu_greedy": bleu, "epoch": epoch, "diverged": False})


@pytest.mark.slow
def test_a_real_search_in_trial_order_repeats_itself_when_its_trials_run_at_other_speeds(tmp_path):
    """The study's own Tuner (`search_tuner`: its searcher, ASHA and concurrency) on a real Ray with two slots, run
    twice with the trials' speeds reversed, so that they report in other orders: the same trials, each with the
    same configuration and the same epochs (ASHA's stops), and Optuna told the same."""
    import ray
    from ray import cloudpickle, tune

    from study.config import Budget
    from study.tuning.runner import search_tuner
    from study.tuning.searcher import optuna_storage_url
    from study.tuning.trials import trial_number_of

    # Ray's workers cannot import this test module: its functions travel by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    space = parse_search_space(SPACE, "t")
    budget = Budget(num_samples=TRIALS, max_epochs=EPOCHS, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0,
                    grace_period=None, reduction_factor=None, max_failures=0, keep_checkpoints=True)
    searches = []
    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        for name, seconds in (("high", _fast_high_lr), ("low", _fast_low_lr)):
            study_dir = tmp_path / name
            study_dir.mkdir()
            trainable = tune.with_parameters(_report_slowly, seconds=seconds)
            grid = search_tuner(trainable, "scratch", budget, space, study_dir, str(study_dir), "scratch", TRIALS,
                                sampler_settings("tpe", "scratch", TRIALS, 0)).fit()
            assert grid.num_errors == 0 and len(grid) == TRIALS
            trials = {trial_number_of(Path(r.path).name): (r.config["lr"], r.config["batch_size"],
                                                          int(r.metrics["epoch"])) for r in grid}
            told = [(t.state.name, t.value) for t in optuna.load_study(
                study_name="scratch", storage=optuna_storage_url(study_dir)).trials]
            searches.append((trials, told))
    finally:
        ray.shutdown()
    (one, told_one), (other, told_other) = searches
    assert one == other
    assert told_one == told_other
    assert any(epochs < EPOCHS for _lr, _b, epochs in one.values()), "ASHA stopped nothing: the test shows too little"
