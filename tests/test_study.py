"""The study end to end on a real local Ray: ASHA pruning reaches Optuna as PRUNED, best.json's test BLEU is what
the sacrebleu command line says, bad input writes nothing. (Ctrl-C + --resume: tests/test_checkpoints.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import PRUNING_EPOCHS

from study.run import main as run_main

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_asha_prunes_and_optuna_records_pruned(pruning_study):
    # A learning rate that learns and one that cannot: once a good trial has set the first rung,
    # ASHA must stop the hopeless ones after their first epoch. TPE seeded with 0 draws bad, good, bad, bad.
    study_dir = pruning_study.path
    trials = optuna.load_study(study_name="scratch", storage=f"sqlite:///{study_dir / 'optuna.db'}").trials
    assert len(trials) == 4
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    order = [t.params["lr"] for t in trials]
    assert 3e-3 in order and 1e-6 in order[order.index(3e-3):], f"sampling changed: {order}"
    assert pruned, [(t.params, t.state, t.intermediate_values) for t in trials]
    for t in pruned:  # stopped early, with the per-epoch values it reached, its last one included
        assert t.params["lr"] == 1e-6
        assert 1 <= len(t.intermediate_values) < PRUNING_EPOCHS
    for t in complete:
        assert sorted(t.intermediate_values) == list(range(1, PRUNING_EPOCHS + 1))
    # The Tune side agrees: pruned trials ran fewer epochs than the budget.
    results = [[json.loads(line) for line in p.read_text().splitlines()]
               for p in (study_dir / "scratch").glob("*/result.json")]
    epochs = [len(r) for r in results]
    assert sorted(epochs)[0] < PRUNING_EPOCHS and max(epochs) == PRUNING_EPOCHS
    # Trials run in a reused worker process (`reuse_actors`; Tune writes each result's `pid`), and a trial's numbers do not depend on what ran
    # there before it: the three trials at lr 1e-6 (same config, same seed) have the same first epoch.
    assert len({r[0]["pid"] for r in results}) < len(results), [r[0]["pid"] for r in results]
    hopeless = [r[0] for r in results if r[0]["config"]["lr"] == 1e-6]
    assert len(hopeless) == 3 and len({(m["train_loss"], m["val_loss"], m["val_bleu"]) for m in hopeless}) == 1

    # best.json's test BLEU is what the sacrebleu command line gives on the written files.
    best = json.loads((study_dir / "scratch" / "best.json").read_text())
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(study_dir / "scratch" / "test.ref.txt"), "-i",
                          str(study_dir / "scratch" / "test.hyp.txt"), "-m", "bleu", "-b", "-w", "4"],
                         capture_output=True, text=True, check=True)
    assert round(best["test_bleu"], 4) == float(out.stdout)
    assert best["lr"] == 3e-3 and best["best_val_bleu"] > 0
    summary = (study_dir / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("regime,best_val_bleu,test_bleu") and summary[1].startswith("scratch,")
    record = json.loads((study_dir / "study.json").read_text())
    assert record["seed"] == 0 and record["versions"]["ray"] and record["bleu_signature"].startswith("nrefs:1")
    assert "regime" in pruning_study.output  # the final summary table was printed


@pytest.mark.parametrize("argv, needle", [
    (["--regime", "sideways"], "unknown regime"),
    (["--preset", "huge"], "unknown preset"),
    (["--max-epochs", "0"], "--max-epochs"),
    (["--cpus-per-trial", "-1"], "--cpus-per-trial"),
    (["--regimes-at-once", "0"], "--regimes-at-once must be positive, got 0"),
    (["--resume", "no-such-study"], "no study named"),
    (["--preset", "paper"], "needs --data"),
    (["--address", "127.0.0.1:1", "--regime", "scratch"], "cannot reach a Ray cluster"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, needle, tmp_path, capsys):
    code = run_main(argv + ["--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_default_command_resolves_to_the_quick_preset_over_all_regimes():
    """`python -m study.run --regime all` with no other flag: the README's first command."""
    from study.run import build_parser, resolve

    config, budget, regimes, spaces = resolve(build_parser().parse_args(["--regime", "all"]))
    assert regimes == ["upstream", "scratch", "decoder", "full"]
    assert config.data == "sample" and config.model == "tiny" and config.regime == "full"
    assert set(spaces) == set(regimes) and set(spaces["upstream"].search) == {"num_beams"}
    for regime in ("scratch", "decoder", "full"):
        assert {"lr", "batch_size", "num_beams"} <= set(spaces[regime].search)
    assert resolve(build_parser().parse_args([]))[2] == regimes  # --regime defaults to all


def test_more_trials_continue_every_search_without_rerunning_a_trial(pruning_study, tmp_path, capsys):
    """--resume NAME --more-trials N on a finished study (a copy of the session's): N more trials per regime,
    proposed by the regime's Optuna study continued (its earlier trials in optuna.db), run as a Tune experiment
    of their own; no earlier trial runs again, and the test split is scored again only if the best changed."""
    from conftest import optuna_trials_in

    from study.analyze import load

    study = Path(shutil.copytree(pruning_study.path, tmp_path / "results" / "pruned"))
    before = {p.parent.name: p.read_text() for p in (study / "scratch").glob("trial_*/result.json")}
    best_before = json.loads((study / "scratch" / "best.json").read_text())
    assert len(before) == 4 and optuna_trials_in(study / "optuna.db", ("COMPLETE", "PRUNED")) == 4
    argv = ["--resume", "pruned", "--results", str(tmp_path / "results"), "--more-trials", "2", "--no-analysis",
            "--gpus-per-trial", "0", "--max-concurrent", "1"]
    assert run_main(argv) == 0
    out = capsys.readouterr()
    assert "optuna.db holds" not in out.err  # check_optuna_agrees: Optuna and Tune count the same trials

    # Optuna continued the one study (6 trials, the first 4 as they were); Tune ran 2 new trials, in more-1/
    trials = optuna.load_study(study_name="scratch", storage=f"sqlite:///{study / 'optuna.db'}").trials
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    extension = sorted((study / "scratch" / "more-1").glob("trial_*/result.json"))
    assert len(extension) == 2
    assert {p.parent.name: p.read_text() for p in (study / "scratch").glob("trial_*/result.json")} == before
    assert sum(len(p.read_text().splitlines()) for p in extension) == sum(
        len(t.intermediate_values) for t in trials[4:])  # Tune's epochs are the new Optuna trials' reports
    record = json.loads((study / "study.json").read_text())
    assert record["more_trials"] == [2]
    a = load(study)
    assert len(a.trials) == 6 and sorted(a.trials["number"]) == [1, 2, 3, 4, 5, 6]

    # scored again only if the best trial changed, and study.json counts it
    best_after = json.loads((study / "scratch" / "best.json").read_text())
    changed = best_after["trial_id"] != best_before["trial_id"]
    assert record["test_scored"] == {"scratch": 2 if changed else 1}
    assert ("its test score stands" in out.out) != changed
    if not changed:
        assert best_after == best_before
    # the extension's search time is in study.json's timings, whether or not the test score stands
    assert record["timings"]["regimes"]["scratch"]["search_s"] > 0

    # asked again after it finished: a second extension (more-2), the first not re-run
    first = {p.parent.name: p.read_text() for p in extension}
    assert run_main(argv[:5] + ["1", *argv[6:]]) == 0
    assert json.loads((study / "study.json").read_text())["more_trials"] == [2, 1]
    assert len(list((study / "scratch" / "more-2").glob("trial_*/result.json"))) == 1
    assert {p.parent.name: p.read_text() for p in (study / "scratch" / "more-1").glob("trial_*/result.json")} == first
    assert optuna_trials_in(study / "optuna.db", ("COMPLETE", "PRUNED")) == 7


def test_more_trials_score_a_regime_again_when_its_best_changes(study_pairs, tmp_path, capsys):
    """A one-trial search whose only trial cannot learn (random draws seeded 0 start with lr 1e-6), extended by
    one trial (its sampler's own seed draws 3e-3): the new trial is the best, so the regime is scored on test
    again, its model exported again, and study.json counts two scorings."""
    from conftest import study_argv, write_space

    space = write_space(tmp_path / "space.yaml", [3e-3, 1e-6])
    results = tmp_path / "results"
    assert run_main(study_argv(study_pairs, results, "tiny", space, 1, 1, study_pairs.parent / "cache")) == 0
    study = results / "tiny"
    first = json.loads((study / "scratch" / "best.json").read_text())
    assert first["lr"] == 1e-6 and json.loads((study / "study.json").read_text())["test_scored"] == {"scratch": 1}
    assert run_main(["--resume", "tiny", "--results", str(results), "--more-trials", "1", "--no-analysis",
                     "--gpus-per-trial", "0", "--max-concurrent", "1"]) == 0
    assert "new best trial" in capsys.readouterr().out
    best = json.loads((study / "scratch" / "best.json").read_text())
    [new] = [p.parent.name for p in (study / "scratch" / "more-1").glob("trial_*/result.json")]
    assert best["trial_id"] == new.rsplit("_", 1)[-1] and best["lr"] == 3e-3
    assert best["best_val_bleu"] > first["best_val_bleu"] and best["trials"] == 2
    assert json.loads((study / "study.json").read_text())["test_scored"] == {"scratch": 2}
    card = (study / "scratch" / "model" / "README.md").read_text()  # the exported model is the new best's
    assert f"| test BLEU | {best['test_bleu']:.2f} |" in card
    assert Path(best["checkpoint"]).is_dir()  # the new best's checkpoint kept, the old one's deleted
    assert not any((study / "scratch").glob("trial_*/checkpoint_*"))


def test_more_trials_needs_a_study_to_extend(tmp_path, capsys):
    assert run_main(["--more-trials", "2", "--results", str(tmp_path)]) == 2
    assert "pass --resume NAME" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
