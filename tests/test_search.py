"""The search searches: TPE's random start is shorter than the budget and its later proposals follow the
objective; each regime draws its own trials unless --same-draws; the constant liar is on; study.json and
the report say which sampler ran; ASHA ranks its rungs by greedy BLEU, whatever a trial's beams."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import optuna
import pytest
from conftest import write_pairs
from ray.tune.search.optuna import OptunaSearch

from study.config import PRESETS
from study.tuning.searcher import (
    RUNG_METRIC,
    make_sampler,
    make_scheduler,
    make_searcher,
    regime_seed,
    sampler_settings,
    startup_trials,
)
from study.tuning.space import default_search_space_path, load_search_space, parse_search_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = load_search_space(default_search_space_path("scratch"))  # the project's: ASHA on loss, beams per checkpoint
# The sampler's behaviour on a space of its own (the project's spaces are the search design's to change).
SAMPLER_SPACE = parse_search_space({"search": {"lr": {"distribution": "loguniform", "low": 3e-4, "high": 1e-2},
                                       "batch_size": {"distribution": "choice", "values": [16, 32, 64]},
                                       "num_beams": {"distribution": "choice", "values": [1, 4]}},
                            "beams": "sampled"}, "test")


def synthetic_bleu(best_lr: float):
    """A made-up objective with its optimum at `best_lr` and batch size 32: no training, just a shape to learn."""
    def objective(params: dict) -> float:
        return 30.0 - 10.0 * (math.log10(params["lr"]) - math.log10(best_lr)) ** 2 - 3.0 * (params["batch_size"] != 32)
    return objective


def drive(sampler, objective, n_trials: int) -> list[dict]:
    """Run `n_trials` through Optuna the way Ray's OptunaSearch does: ask with the space converted by Ray, tell."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    distributions = OptunaSearch.convert_search_space(SAMPLER_SPACE.tune_space())
    for _ in range(n_trials):
        trial = study.ask(fixed_distributions=distributions)
        study.tell(trial, objective(trial.params))
    return [t.params for t in study.trials]


def test_tpe_random_start_is_shorter_than_every_presets_budget():
    for name, preset in PRESETS.items():
        n = preset["num_samples"]
        settings = sampler_settings("tpe", "scratch", n, study_seed=0)
        assert 2 <= settings["n_startup_trials"] < n, name
        assert make_sampler(settings)._n_startup_trials == settings["n_startup_trials"]
    assert [startup_trials(n) for n in (1, 8, 40)] == [2, 2, 10]

    # In behaviour: TPE's first n_startup proposals are its random start (exactly RandomSampler's draws with
    # the same seed); every later one is the model's, not the random sampler's.
    n = PRESETS["quick"]["num_samples"]
    settings = sampler_settings("tpe", "scratch", n, study_seed=0)
    k = settings["n_startup_trials"]
    tpe = drive(make_sampler(settings), synthetic_bleu(1e-3), n)
    random = drive(optuna.samplers.RandomSampler(seed=settings["seed"]), synthetic_bleu(1e-3), n)
    assert tpe[:k] == random[:k]
    assert all(t["lr"] != r["lr"] for t, r in zip(tpe[k:], random[k:])), (tpe, random)


def test_tpe_later_proposals_follow_the_objective():
    """Same sampler, same seed, two objectives: the random start is the same, the proposals after it move
    toward each objective's optimum, so they come from a model of the results, not from the seed."""
    n = 12
    settings = sampler_settings("tpe", "scratch", n, study_seed=0)
    k = settings["n_startup_trials"]
    low = drive(make_sampler(settings), synthetic_bleu(4e-4), n)
    high = drive(make_sampler(settings), synthetic_bleu(8e-3), n)
    assert low[:k] == high[:k]

    def mean_log_lr(trials: list[dict]) -> float:
        return sum(math.log10(t["lr"]) for t in trials) / len(trials)

    assert mean_log_lr(low[k:]) < math.log10(1.5e-3) < mean_log_lr(high[k:]), (low, high)
    # and closer to the optimum than random search with the same seed gets
    random = drive(optuna.samplers.RandomSampler(seed=settings["seed"]), synthetic_bleu(4e-4), n)
    objective = synthetic_bleu(4e-4)
    assert sum(map(objective, low[k:])) > sum(map(objective, random[k:]))


def test_each_regime_draws_its_own_trials_unless_same_draws():
    seeds = {r: sampler_settings("tpe", r, 8, study_seed=0)["seed"] for r in ("scratch", "decoder", "full")}
    assert len(set(seeds.values())) == 3
    # stable across processes and machines (a hash of the names, not Python's salted hash())
    assert regime_seed(0, "full") == int(hashlib.sha256(b"0\x1ffull\x1f").hexdigest()[:8], 16)
    assert regime_seed(1, "full") != regime_seed(0, "full")
    # decoder and full search the same space: with their own seeds their first trials differ
    full_space = load_search_space(default_search_space_path("full"))
    distributions = OptunaSearch.convert_search_space(full_space.tune_space())

    def first_draw(settings: dict) -> dict:
        return optuna.create_study(sampler=make_sampler(settings)).ask(fixed_distributions=distributions).params

    assert first_draw(sampler_settings("tpe", "decoder", 8, 0)) != first_draw(sampler_settings("tpe", "full", 8, 0))
    same = {r: sampler_settings("tpe", r, 8, study_seed=5, same_draws=True) for r in ("decoder", "full")}
    assert same["decoder"]["seed"] == same["full"]["seed"] == 5
    assert first_draw(same["decoder"]) == first_draw(same["full"])


def test_constant_liar_spreads_the_trials_asked_while_others_run():
    """Four trials asked at once after the random start (as with --max-concurrent 4): without the constant
    liar TPE proposes four near-copies of one point; with it each running trial counts as a poor result,
    so the next proposal goes elsewhere."""
    settings = sampler_settings("tpe", "scratch", 8, study_seed=0)
    sampler = make_sampler(settings)
    assert settings["constant_liar"] and sampler._constant_liar and settings["multivariate"] and sampler._multivariate
    distributions = OptunaSearch.convert_search_space(SAMPLER_SPACE.tune_space())

    def spread_of_running(liar: bool, finished: int) -> float:
        study = optuna.create_study(direction="maximize", sampler=make_sampler({**settings, "constant_liar": liar}))
        objective = synthetic_bleu(1e-3)
        for _ in range(finished):
            trial = study.ask(fixed_distributions=distributions)
            study.tell(trial, objective(trial.params))
        running = [math.log10(study.ask(fixed_distributions=distributions).params["lr"]) for _ in range(4)]
        return max(running) - min(running)  # decades of lr the four running trials cover

    for finished in (settings["n_startup_trials"], 4):
        assert spread_of_running(True, finished) > 3 * spread_of_running(False, finished), finished


def test_study_json_and_report_record_the_sampler(tmp_path):
    from study.analysis.report import sampler_line
    from study.outputs.record import study_record
    from study.run import build_parser, resolve

    def record(*flags: str) -> dict:
        config, budget, regimes, spaces = resolve(build_parser().parse_args(
            ["--regime", "upstream,scratch,decoder,full", "--cache-dir", str(tmp_path), *flags]))
        return json.loads(json.dumps(study_record(config, budget, regimes, "quick", spaces, "t")))

    samplers = record()["samplers"]
    n = PRESETS["quick"]["num_samples"]
    for regime in ("scratch", "decoder", "full"):
        assert samplers[regime] == {"sampler": "tpe", "seed": regime_seed(0, regime), "same_draws": False,
                                    "trials": n, "n_startup_trials": startup_trials(n), "multivariate": True,
                                    "constant_liar": True}
    assert samplers["upstream"]["trials"] == samplers["upstream"]["enqueued_grid_points"] == 2  # one per beam choice
    assert "enqueued_grid_points" not in samplers["scratch"]
    upstream = sampler_line("upstream", samplers["upstream"])
    assert "2 points of its decoding grid, enqueued" in upstream and "at random" not in upstream
    same = record("--same-draws", "--seed", "3")["samplers"]
    assert {s["seed"] for s in same.values()} == {3} and all(s["same_draws"] for s in same.values())
    random = record("--searcher", "random")["samplers"]["full"]
    assert random["sampler"] == "random" and "n_startup_trials" not in random
    line = sampler_line("full", samplers["full"])
    assert f"first {startup_trials(n)} of {n} trials at random" in line and "constant liar True" in line
    assert "random sampling" in sampler_line("full", random)


def test_searcher_and_scheduler_get_the_settings(tmp_path):
    settings = sampler_settings("tpe", "full", 8, study_seed=0)
    searcher = make_searcher(tmp_path, "full", 3, settings)
    assert isinstance(searcher._sampler, optuna.samplers.TPESampler)
    assert searcher._sampler._n_startup_trials == 2 and searcher._sampler._constant_liar
    assert isinstance(make_searcher(tmp_path, "scratch", 3, sampler_settings("random", "scratch", 8, 0))._sampler,
                      optuna.samplers.RandomSampler)
    # the quick preset's spaces rank ASHA's rungs by validation loss (README, "How the search was chosen"); a
    # space that names no rung metric gets greedy validation BLEU
    assert make_scheduler(SPACE, 3, None, None)._metric == SPACE.asha["rung_metric"] == "val_loss"
    assert make_scheduler(SPACE, 3, None, None)._mode == "min"
    plain = parse_search_space({"search": SPACE.search, "asha": {"grace_period": 1}}, "plain")
    assert make_scheduler(plain, 3, None, None)._metric == RUNG_METRIC == "val_bleu_greedy"


def test_a_regime_that_trains_nothing_tries_each_decoding_choice_once(tmp_path):
    """upstream's 2 trials are its 2 beam choices, whatever the seed (drawn, both could pick the same)."""
    from study.tuning.searcher import METRIC, MODE

    space = load_search_space(default_search_space_path("upstream"))
    assert space.grid_points() == [{"num_beams": 1}, {"num_beams": 4}] and SPACE.grid_points() is None
    for seed in range(4):
        (tmp_path / str(seed)).mkdir()
        searcher = make_searcher(tmp_path / str(seed), "upstream", 0, sampler_settings("tpe", "upstream", 2, seed),
                                 points_to_evaluate=space.grid_points())
        searcher.set_search_properties(METRIC, MODE, space.tune_space())
        assert sorted(searcher.suggest(f"t{i}")["num_beams"] for i in range(2)) == [1, 4], seed


@pytest.mark.slow
def test_a_beam_trial_reports_the_greedy_bleu_its_rungs_are_ranked_by(tmp_path):
    """Beams change decoding, not training: a beam-4 trial's val_bleu_greedy is the val_bleu of the same trial
    decoded greedily (same seed, same training), and differs from its own beam-4 val_bleu. Asked for only (its
    search ranks rungs by it): otherwise the second generation pass is not run, and the training is the same."""
    from study.config import Config
    from study.data.prepared import prepare_data
    from study.training.loop import fit

    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, 400)
    config = Config(data=str(pairs), cache_dir=str(tmp_path / "cache"), regime="scratch", tiny_d_model=48,
                    tiny_layers=1, tiny_heads=2, tiny_d_ff=96, tiny_vocab_size=300, max_eval_pairs=40,
                    eval_batch_size=40, batch_size=16, epochs=2, lr=5e-3, torch_threads=1)
    data = prepare_data(config)

    def epochs(num_beams: int, greedy_bleu: bool = False) -> list[dict]:
        reported: list[dict] = []
        fit(config.replace(num_beams=num_beams), data, lambda metrics, save: reported.append(metrics),
            greedy_bleu=greedy_bleu)
        return reported

    greedy, beams = epochs(1), epochs(4, greedy_bleu=True)
    assert [m["val_bleu_greedy"] for m in greedy] == [m["val_bleu"] for m in greedy]
    assert [m["val_bleu_greedy"] for m in beams] == pytest.approx([m["val_bleu"] for m in greedy], abs=1e-9)
    assert [m["val_bleu"] for m in beams] != [m["val_bleu"] for m in greedy]  # the beams did decode differently
    unasked = epochs(4)
    assert all("val_bleu_greedy" not in m for m in unasked)
    for asked, plain in zip(beams, unasked):  # the greedy pass changed nothing else
        timed = ("epoch_time_s", "train_tokens_per_s")
        assert {k: v for k, v in asked.items() if k not in ("val_bleu_greedy", *timed)} == pytest.approx(
            {k: v for k, v in plain.items() if k not in timed})


def test_only_a_search_ranking_rungs_by_greedy_bleu_pays_for_the_greedy_pass():
    from study.config import Budget
    from study.tuning.runner import needs_greedy_bleu

    greedy = parse_search_space({"search": SPACE.search, "asha": {"rung_metric": "val_bleu_greedy"}}, "greedy")
    loss = SPACE  # the default spaces rank rungs by validation loss
    unnamed = parse_search_space({"search": SPACE.search}, "plain")  # greedy BLEU: ASHA's default rung metric
    budget = Budget(num_samples=4, max_epochs=3, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0,
                    grace_period=None, reduction_factor=None, max_failures=0)
    assert needs_greedy_bleu("scratch", budget, greedy) and needs_greedy_bleu("full", budget, unnamed)
    assert not needs_greedy_bleu("scratch", budget, loss)
    assert not needs_greedy_bleu("upstream", budget, greedy)  # nothing trains: no ASHA
    assert not needs_greedy_bleu("scratch", dataclasses.replace(budget, scheduler="none"), greedy)


def test_a_resumed_study_reads_its_settings_from_its_record(tmp_path):
    """A resumed study is searched as it began: config, regimes, spaces and the search's budget (--searcher,
    --scheduler, --same-draws, ASHA's settings, trials, seeds) come from the study.json the study wrote, not from
    the resume command's defaults; the resources come from the resume command (the cluster may differ)."""
    from study.common import write_json
    from study.outputs.record import study_record
    from study.outputs.storage import StudyLocation
    from study.run import build_parser, resolve, resumed_settings

    results = tmp_path / "results"
    started = build_parser().parse_args(["--regime", "upstream,scratch", "--cache-dir", str(tmp_path / "cache"),
                                         "--searcher", "random", "--scheduler", "none", "--same-draws",
                                         "--grace-period", "2", "--num-samples", "5", "--seeds", "2",
                                         "--max-epochs", "4", "--seed", "7", "--keep-checkpoints"])
    config, budget, regimes, spaces = resolve(started)
    assert (budget.max_concurrent, budget.gpus_per_trial, budget.regimes_at_once) == (None, None, 2)
    ran = dataclasses.replace(budget, max_concurrent=2, gpus_per_trial=0.0)  # as finish_budget leaves it
    (results / "s").mkdir(parents=True)
    write_json(results / "s" / "study.json", study_record(config, ran, regimes, "quick", spaces, "s"))

    resume = build_parser().parse_args(["--resume", "s", "--results", str(results), "--cache-dir",
                                        str(tmp_path / "cache"), "--max-concurrent", "3", "--regimes-at-once", "1"])
    config2, budget2, regimes2, spaces2 = resumed_settings(resume, StudyLocation(str(results), "s",
                                                                                  str(tmp_path / "cache")))
    assert config2 == config and regimes2 == regimes == ["upstream", "scratch"] and spaces2 == spaces
    assert budget2 == dataclasses.replace(budget, max_concurrent=3, regimes_at_once=1)
    assert (budget2.searcher, budget2.scheduler, budget2.same_draws, budget2.grace_period) == ("random", "none", True, 2)
    assert (budget2.num_samples, budget2.max_epochs, budget2.seeds, budget2.keep_checkpoints) == (5, 4, 2, True)


def test_a_resume_says_which_study_flags_it_ignores(tmp_path, capsys):
    """Flags that define a study, given with --resume, were silently ignored (its record wins): now one warning line
    names them, and the resources and --resume's own flags pass unremarked."""
    from study.common import write_json
    from study.outputs.record import study_record
    from study.outputs.storage import StudyLocation
    from study.run import build_parser, resolve, resumed_settings

    cache, results = str(tmp_path / "cache"), tmp_path / "results"
    config, budget, regimes, spaces = resolve(build_parser().parse_args(["--regime", "scratch", "--cache-dir", cache,
                                                                         "--max-epochs", "4"]))
    (results / "s").mkdir(parents=True)
    write_json(results / "s" / "study.json", study_record(config, budget, regimes, "quick", spaces, "s"))
    resume = ["--resume", "s", "--results", str(results), "--cache-dir", cache, "--max-concurrent", "3",
              "--no-analysis"]
    resumed_settings(build_parser().parse_args(resume), StudyLocation(str(results), "s", cache))
    assert "warning" not in capsys.readouterr().err
    given = build_parser().parse_args([*resume, "--max-epochs", "9", "--preset", "paper", "--grace-period", "2",
                                       "--seed", "5"])
    budget2 = resumed_settings(given, StudyLocation(str(results), "s", cache))[1]
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("warning: --preset --max-epochs --grace-period --seed ignored: --resume continues s"), line
    assert "--max-concurrent" not in line.partition("(")[0] and budget2.max_epochs == 4 and budget2.max_concurrent == 3


def test_an_old_record_still_resumes():
    """study.json from before a budget field existed, or with the sentinels once recorded (regimes_at_once 0),
    gives the values such studies ran with; today's resources are the resume command's."""
    from study.config import Config
    from study.outputs.record import settings_from_record

    record = {"regimes": ["scratch", "full"], "config": Config().to_dict(), "search_spaces": {},
              "budget": {"num_samples": 8, "max_epochs": 3, "max_concurrent": 2, "cpus_per_trial": 1.0,
                         "gpus_per_trial": -1, "grace_period": None, "reduction_factor": None, "max_failures": 2,
                         "regimes_at_once": 0}}
    machine = {"max_concurrent": None, "cpus_per_trial": 2.0, "gpus_per_trial": None, "max_failures": 1,
               "regimes_at_once": None}
    config, budget, regimes, spaces = settings_from_record(record, machine)
    assert config == Config() and regimes == ["scratch", "full"] and spaces == {}
    assert (budget.searcher, budget.scheduler, budget.seeds, budget.same_draws, budget.keep_checkpoints) == \
        ("tpe", "asha", 1, False, False)
    assert (budget.max_concurrent, budget.gpus_per_trial, budget.cpus_per_trial, budget.max_failures,
            budget.regimes_at_once) == (None, None, 2.0, 1, 2)
    assert settings_from_record(record, machine, keep_checkpoints=True)[1].keep_checkpoints
