"""The search as the quick preset runs it: Optuna is told the score the study selects by, ASHA can wait for
enough results at a rung, TPE + ASHA + a beam search run together in a real study, and the replay over the
search table (benchmarks/search_replay.py) makes the decisions real Ray Tune makes over the same table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from benchmarks import replay_arms, replay_table, search_replay
from study.tuning.searcher import (
    METRIC,
    MODE,
    AshaAwareOptunaSearch,
    make_sampler,
    make_scheduler,
    sampler_settings,  # noqa: E402
)
from study.tuning.space import load_search_space, parse_search_space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"search": {"lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2},
                    "batch_size": {"distribution": "choice", "values": [16, 32]},
                    "num_beams": {"distribution": "choice", "values": [1, 4]}},
         "fixed": {}, "asha": {"grace_period": 1, "reduction_factor": 2}}


def synthetic_table(epochs: int = 3, seeds: int = 2) -> dict:
    """A search table of the shape search_table.py writes, with curves made up so that configurations differ:
    BLEU peaks at lr 1e-3 and batch 16, grows with epochs; seeds differ a little; batch 32 takes half the time."""
    lrs = [1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2]
    points = [{"regime": "upstream", "lr": None, "batch_size": None, "seed": 0, "fixed": {}, "epochs": [],
               "upstream": {"validation": {"study_bleu_b1": 0.3, "study_bleu_b4": 0.4},
                            "test": {"bleu_b1": 0.2, "bleu_b4": 0.25}}}]
    for regime, lift in (("scratch", 0.0), ("full", 3.0)):
        for lr in lrs:
            for batch in (16, 32):
                for seed in range(seeds):
                    quality = 10 - 3 * abs(math.log10(lr) + 3) - (1 if batch == 32 else 0) + lift + 0.3 * seed
                    rows, test = [], {}
                    for e in range(1, epochs + 1):
                        bleu = quality * e / epochs
                        rows.append({"epoch": e, "diverged": False, "train_loss": 5 - bleu / 4,
                                     "val_loss": 5 - bleu / 4, "val_loss_study": 5 - bleu / 4 + 0.01 * seed,
                                     "val_bleu_greedy": bleu, "val_bleu_beam4": bleu + 0.5,
                                     "larger_bleu_greedy": bleu + 0.1, "larger_bleu_beam4": bleu + 0.6,
                                     "train_seconds": (10.0 if batch == 16 else 5.0) + 0.1 * lrs.index(lr),
                                     "val_seconds_greedy": 1.0, "val_seconds_beam4": 2.0, "epoch_time_s": 11.0})
                    for beams in (1, 4):
                        test[f"b{beams}_e{epochs}"] = {"test_bleu": quality - 0.5 + (0.4 if beams == 4 else 0)}
                        test[f"b{beams}_best_epoch"] = epochs
                    points.append({"regime": regime, "lr": lr, "batch_size": batch, "seed": seed, "fixed": {},
                                   "epochs": rows, "test": test})
    return {"config": {"epochs": epochs}, "beams": [1, 4], "points": points}


def _searcher(sampler: str = "tpe", seed: int = 0, n_trials: int = 6) -> AshaAwareOptunaSearch:
    space = parse_search_space(SPACE, "test")
    searcher = AshaAwareOptunaSearch(metric=METRIC, mode=MODE, max_epochs=3, study_name="t",
                                     sampler=make_sampler(sampler_settings(sampler, "scratch", n_trials, seed)))
    searcher.set_search_properties(None, None, space.tune_space())
    return searcher


def test_optuna_is_told_the_best_epoch_of_a_finished_trial_not_its_last():
    """The study selects a trial by its best epoch (study.tuning.best): a trial whose epoch 2 beat its epoch 3
    reaches TPE with epoch 2's score."""
    searcher = _searcher()
    searcher.suggest("a")
    for epoch, bleu in enumerate([5.0, 7.0, 6.0], 1):
        searcher.on_trial_result("a", {"val_bleu": bleu, "training_iteration": epoch, "epoch": epoch})
    searcher.on_trial_complete("a", {"val_bleu": 6.0, "training_iteration": 3, "epoch": 3, "diverged": False})
    [trial] = searcher._ot_study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 7.0


class _T:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


@pytest.mark.parametrize("min_results, stopped", [(1, ["b", "c", "d"]), (3, ["d"])])
def test_asha_waits_for_min_results_at_a_rung_before_it_stops_any(min_results, stopped):
    """Ray's ASHA judges a rung's second arrival against the first alone; with min_results 3 the first three
    arrivals go on, and the fourth is judged against all three."""
    space = parse_search_space({**SPACE, "asha": {**SPACE["asha"], "min_results": min_results}}, "test")
    scheduler = make_scheduler(space, max_epochs=3, grace_period=None, reduction_factor=None)
    decisions = {}
    for trial_id, bleu in (("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 3.5)):
        scheduler.on_trial_add(None, _T(trial_id))
        decisions[trial_id] = scheduler.on_trial_result(None, _T(trial_id), {"training_iteration": 1,
                                                                            "val_bleu_greedy": bleu})
    assert [t for t, d in decisions.items() if d == TrialScheduler.STOP] == stopped


def test_asha_can_rank_a_rung_by_validation_loss():
    space = parse_search_space({**SPACE, "asha": {**SPACE["asha"], "rung_metric": "val_loss"}}, "test")
    scheduler = make_scheduler(space, max_epochs=3, grace_period=None, reduction_factor=None)
    for trial_id, loss in (("a", 2.0), ("b", 3.0)):
        scheduler.on_trial_add(None, _T(trial_id))
        decision = scheduler.on_trial_result(None, _T(trial_id), {"training_iteration": 1, "val_loss": loss})
    assert decision == TrialScheduler.STOP  # b's loss is the higher: lower is better for a loss
    with pytest.raises(Exception, match="rung_metric"):
        parse_search_space({**SPACE, "asha": {"rung_metric": "val_bleu"}}, "test")


def test_replay_trials_report_the_tables_epochs_and_the_oracle_reads_it():
    table = replay_table.Table(synthetic_table())
    point = table.points[("full", 1e-3, 16)][1]
    rows = replay_table.epoch_rows(point, (4,))  # a trial decoding with 4 beams alone (beams: sampled)
    assert [r["val_bleu"] for r in rows] == [e["val_bleu_beam4"] for e in point["epochs"]]
    assert [r["val_bleu_greedy"] for r in rows] == [e["val_bleu_greedy"] for e in point["epochs"]]
    assert rows[0]["seconds"] == pytest.approx(10.2 + 2.0)  # training, beam validation
    both = replay_table.epoch_rows(point)  # every checkpoint scored at both widths: the better one, and its width
    assert [(r["val_bleu"], r["num_beams_best"]) for r in both] == [(e["val_bleu_beam4"], 4) for e in point["epochs"]]
    assert both[0]["seconds"] == pytest.approx(10.2 + 1.0 + 2.0)
    assert table.snap("full", 1.2e-3, 16) == 1e-3 and table.snap("full", 2.5e-3, 32) == 3.16e-3
    truth = replay_table.oracle(table)
    assert (truth["regimes"]["full"]["lr"], truth["regimes"]["full"]["batch_size"]) == (1e-3, 16)
    assert truth["regimes"]["full"]["val_mean"] == pytest.approx(10 + 3 + 0.15 + 0.5)  # best epoch, 4 beams
    assert truth["ranking"] == ["full", "scratch", "upstream"]


def test_the_replays_choice_of_design_ignores_the_tables_test_figures(tmp_path):
    """Every figure a design is chosen by is validation BLEU: with the table's test figures shuffled between points
    the replay recommends the same arm, with the same figures to the digit."""
    path = tmp_path / "table.json"
    path.write_text(json.dumps(synthetic_table()), encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text(json.dumps(SPACE), encoding="utf-8")  # JSON is YAML; the synthetic table's batch sizes
    arms = ["random", "tpe+asha_loss_patient2+warm", "tpe+asha_loss_patient2+ladder5"]
    runs = [search_replay.replay(path, arms, 3, 1, 5, 2, 1, shuffle_test=shuffle, space_file=space)
            for shuffle in (None, 1)]
    assert runs[0]["oracle"]["regimes"]["scratch"]["test_mean"] != runs[1]["oracle"]["regimes"]["scratch"]["test_mean"]
    assert runs[0]["recommended"] == runs[1]["recommended"]
    chosen_by = ("regret_max", "regret_spread", "epochs_mean", "oracle_best_stopped_max", "meets_targets")
    assert [[a[k] for k in chosen_by] for a in runs[0]["arms"]] == [[a[k] for k in chosen_by] for a in runs[1]["arms"]]


def test_the_quick_presets_spaces_start_from_the_chosen_arms_ladder():
    """The design the replay chose is the one the trained regimes' search spaces run: one rule, every regime alike."""
    from study.tuning.space import default_search_space_path

    arm = replay_arms.parse_arm(replay_arms.CHOSEN)
    for regime in ("scratch", "decoder", "full"):
        space = load_search_space(default_search_space_path(regime))
        assert space.start_points() == replay_arms.start_points(arm, space), regime
        assert space.asha == replay_arms.SCHEDULERS[arm["scheduler"]] and space.beam_widths() == (1, 4)
    spaces = [load_search_space(default_search_space_path(r)).search for r in ("scratch", "decoder", "full")]
    assert spaces[0] == spaces[1] == spaces[2]


@pytest.mark.slow
def test_replay_makes_the_decisions_real_ray_tune_makes_over_the_same_table(tmp_path):
    """The replay's event loop against a real Tune run of the same searcher and scheduler whose trainable reads
    the same table: the same configurations proposed, in order, and the same trials stopped early, on two
    seeds. One trial at a time, so that the order of reports cannot differ; one seed per point, so that both
    read the same curves."""
    import ray
    from ray import tune

    from study.tuning.trials import PRUNED, ended_as

    record = synthetic_table(seeds=1)
    table = replay_table.Table(record)
    space_file = tmp_path / "space.yaml"
    space_file.write_text(json.dumps(SPACE), encoding="utf-8")  # JSON is YAML
    space = load_search_space(space_file)
    curves = {f"{lr}|{b}": replay_table.epoch_rows(seeds[0])  # beams scored per checkpoint
              for (regime, lr, b), seeds in table.points.items() if regime == "scratch"}
    grid_lrs = sorted({lr for (regime, lr, _b) in table.points if regime == "scratch"})

    def read_table(config: dict) -> None:  # the replay's trial, as a real Tune trainable
        lr = min(grid_lrs, key=lambda g: abs(math.log(g) - math.log(config["lr"])))
        for row in curves[f"{lr}|{config['batch_size']}"]:
            tune.report({k: v for k, v in row.items() if k != "seconds"})

    ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        for seed in range(2):
            replayed = search_replay.replay_regime(table, "scratch", "tpe+asha", seed, 5, 1, space)
            searcher, scheduler = replay_arms.make_search("scratch", replay_arms.parse_arm("tpe+asha"), seed, 5,
                                                             table.epochs, space)
            searcher._space = None  # Tune hands it the space (set_search_properties), as in a study
            grid = tune.Tuner(read_table, param_space=space.tune_space(),
                              tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=5,
                                                          max_concurrent_trials=1, reuse_actors=True),
                              run_config=tune.RunConfig(storage_path=str(tmp_path / f"tune{seed}"), verbose=0)).fit()
            real = sorted(grid, key=lambda r: r.metrics_dataframe["timestamp"].min())
            real_trials = [{"lr": table.snap("scratch", r.config["lr"], r.config["batch_size"]),
                            "batch_size": r.config["batch_size"], "num_beams": r.config.get("num_beams"),
                            "epochs": int(r.metrics["training_iteration"]),
                            "stopped_early": ended_as(r.metrics, table.epochs) == PRUNED} for r in real]
            assert real_trials == replayed["trials"], seed
            assert any(t["stopped_early"] for t in real_trials), "ASHA stopped nothing: the test shows too little"
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_real_study_runs_tpe_with_asha_on_loss_over_beams_from_its_start_point(study_pairs, tmp_path):
    """TPE and ASHA together, as the quick preset runs them, in a real Ray study that searches beams: the
    space's start point runs first, ASHA ranks rungs by validation loss (so a trial at beams runs no greedy
    decoding pass besides its own), and Optuna holds each finished trial's best epoch."""
    from conftest import study_argv

    from study.run import main as run_main
    from study.tuning.searcher import optuna_storage_url

    space = tmp_path / "space.yaml"
    space.write_text("search:\n  lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
                     "  num_beams: {distribution: choice, values: [1, 2]}\n"
                     "fixed: {batch_size: 16}\n"
                     "asha: {grace_period: 1, reduction_factor: 2, rung_metric: val_loss, min_results: 2}\n"
                     "start: [{lr: 3.0e-3, num_beams: 2}]\n"
                     "beams: sampled\n", encoding="utf-8")  # a model trained per width, as a user may still ask
    argv = study_argv(study_pairs, tmp_path / "results", "tpe", space, 4, 2, study_pairs.parent / "cache")
    argv = argv[:argv.index("--searcher")] + ["--searcher", "tpe"]
    assert run_main(argv) == 0
    study = tmp_path / "results" / "tpe"
    record = json.loads((study / "study.json").read_text())
    assert record["samplers"]["scratch"]["sampler"] == "tpe"
    assert record["schedulers"]["scratch"]["rung_metric"] == "val_loss"
    assert record["schedulers"]["scratch"]["min_results"] == 2
    assert record["search_spaces"]["scratch"]["start"] == [{"lr": 3.0e-3, "num_beams": 2}]
    trials = optuna.load_study(study_name="scratch", storage=optuna_storage_url(study)).trials
    assert len(trials) == 4 and trials[0].params == {"lr": 3.0e-3, "num_beams": 2}  # the start point first
    epochs = {}
    for folder in (study / "scratch").glob("trial_*"):
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        epochs[(rows[0]["config"]["lr"], rows[0]["config"]["num_beams"])] = rows
    assert len(epochs) == 4
    beamed = [rows for (lr, beams), rows in epochs.items() if beams == 2]
    assert beamed and all("val_bleu_greedy" not in r and "val_loss" in r for rows in beamed for r in rows)
    for t in trials:
        rows = epochs[(t.params["lr"], t.params["num_beams"])]
        if t.state == optuna.trial.TrialState.COMPLETE:  # told its best epoch, as the study selects
            assert t.value == pytest.approx(max(r["val_bleu"] for r in rows))
        else:
            assert t.state == optuna.trial.TrialState.PRUNED and len(rows) < 2


@pytest.mark.parametrize("start, needle", [([{"lr": 1.0, "batch_size": 16, "num_beams": 1}], "outside"),
                                           ([{"lr": 1e-3, "num_beams": 4}], "exactly the searched"),
                                           ({"lr": 1e-3}, "list of mappings")])
def test_a_start_point_outside_the_space_is_refused_with_one_line(start, needle):
    from study.config import StudyError

    with pytest.raises(StudyError, match=needle):
        parse_search_space({**SPACE, "start": start}, "space.yaml")
    assert parse_search_space({**SPACE, "start": [{"lr": 1e-3, "batch_size": 16, "num_beams": 4}]},
                              "space.yaml").start == [{"lr": 1e-3, "batch_size": 16, "num_beams": 4}]


def test_studies_are_checked_against_the_oracle_on_validation(tmp_path, capsys):
    """benchmarks/studies_vs_oracle.py: a study that picked the oracle's configuration matches it, one that picked
    a poor learning rate does not, and a finding on a pair the oracle cannot order is listed."""
    from benchmarks import studies_vs_oracle

    table_path = tmp_path / "table.json"
    table_path.write_text(json.dumps(synthetic_table(seeds=3)), encoding="utf-8")
    truth = replay_table.oracle(replay_table.Table(synthetic_table(seeds=3)))
    studies = []
    for name, lr in (("good", 1e-3), ("poor", 1e-4)):
        study = tmp_path / name
        for regime in ("scratch", "full"):
            (study / regime).mkdir(parents=True)
            val = truth["regimes"][regime]["val_mean"] if lr == 1e-3 else 3.0
            (study / regime / "best.json").write_text(json.dumps(
                {"lr": lr * 1.1, "batch_size": 16, "num_beams": 4, "best_val_bleu": val}), encoding="utf-8")
        (study / "study.json").write_text(json.dumps({"seed": len(studies)}), encoding="utf-8")
        (study / "pairwise.csv").write_text("a,b,difference,verdict\nfull,scratch,3.0,a finding\n", encoding="utf-8")
        studies.append(str(study))
    out = tmp_path / "out.json"
    assert studies_vs_oracle.main([*studies, "--table", str(table_path), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    good, poor = record["studies"]
    assert good["regimes"]["full"]["within_1_bleu"] and good["regimes"]["full"]["picked_is_oracles"]
    assert not poor["regimes"]["full"]["within_1_bleu"] and poor["regimes"]["full"]["picked_table_lr"] == 1e-4
    assert record["summary"]["full"] == {"within_1_bleu": 1, "picked_oracles": 1, "studies": 2}
    # full is 3 BLEU above scratch at every seed of the synthetic table: validation orders them
    assert [p["oracle"] for p in good["pairs"]] == ["ordered"] and record["findings_the_oracle_cannot_order"] == []
    assert studies_vs_oracle.main([str(tmp_path / "nowhere"), "--table", str(table_path)]) == 2
    assert "not a study folder" in capsys.readouterr().err
