"""Regimes searched side by side (issue 31, item 2) write what they write one after another.

Two regimes, each with its trials one at a time in a fixed order (the space's choices drawn by a seeded random
sampler), so that a regime's trials do not depend on which other regime's trial ran beside them: the study with
the regimes side by side, the same study with `--regimes-at-once 1`, and a side-by-side study interrupted as one
regime's test scoring is about to start (the other regime must stop too, its state saved) and then resumed,
all give each regime the same best.json, test hypotheses and exported model. Side by side, the regimes' steps
overlap in time: their phases add up to more than the whole.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import STUDY_FLAGS, write_space

from study import run as study_run
from study.analysis.report import timings_section

pytestmark = pytest.mark.slow  # three small Ray studies of two regimes
REGIMES = ("scratch", "full")
VOLATILE = {"search_wall_s", "trial_wall_s", "test_scoring_task_s", "scored_node_id", "scored_node_ip", "node_id", "trial_id", "checkpoint"}


def _argv(pairs: Path, results: Path, name: str, space: Path, cache: Path, *more: str) -> list[str]:
    return ["--regime", ",".join(REGIMES), "--data", str(pairs), "--results", str(results), "--name", name,
            "--cache-dir", str(cache), "--search-space", str(space), "--num-samples", "2", "--max-epochs", "1",
            "--max-concurrent", "1", "--seed", "0", "--no-analysis", "--searcher", "random", "--same-draws",
            "--pretrain-steps", "10", *STUDY_FLAGS, "--seeds", "2", *more]


def _files(study: Path) -> dict:
    out = {}
    for regime in REGIMES:
        best = json.loads((study / regime / "best.json").read_text())
        out[regime] = {
            "best": {k: v for k, v in best.items() if k not in VOLATILE | {"seeds", "config"}},
            "seeds": [{k: v for k, v in s.items() if k not in VOLATILE} for s in best["seeds"]],
            "texts": {p.name: p.read_text() for p in sorted((study / regime).glob("test.*.txt"))},
            "weights": (study / regime / "model" / "model.safetensors").read_bytes(),
        }
    return out


def _overlap(study: Path) -> float:
    """How much longer the regimes' phases took, added up, than all the regimes together (> 0: they overlapped)."""
    timings = json.loads((study / "study.json").read_text())["timings"]
    return sum(sum(phases.values()) for phases in timings["regimes"].values()) - timings["regimes_s"]


def test_regimes_side_by_side_write_what_they_write_one_after_another(study_pairs, tmp_path, monkeypatch, capsys):
    # Every Tune run starts in the same second, as two regimes' seed runs may: each must still stage its files apart
    # (`internals.tune_runs_side_by_side`), else each regime's seeds/ gets the other's trials and a resume fails.
    monkeypatch.setattr("ray.tune.utils.date_str", lambda: "2026-12-08_03-00-00")
    space = write_space(tmp_path / "space.yaml", [3e-3, 1e-3])
    cache, results = study_pairs.parent / "cache", tmp_path / "results"
    assert study_run.main(_argv(study_pairs, results, "apart", space, cache, "--regimes-at-once", "1")) == 0
    assert study_run.main(_argv(study_pairs, results, "beside", space, cache)) == 0
    apart, beside = _files(results / "apart"), _files(results / "beside")
    for study in ("apart", "beside"):  # --seeds 2: one seed re-run per regime, its own alone
        assert [len(list((results / study / r / "seeds").glob("trial_*"))) for r in REGIMES] == [1, 1], study
    for regime in REGIMES:
        for key, expected in apart[regime].items():
            assert beside[regime][key] == expected, (regime, key)
    assert _overlap(results / "apart") <= 0.5 < _overlap(results / "beside")
    # the slots' work counts the test scoring tasks' own time besides the trials'
    timings = json.loads((results / "beside" / "study.json").read_text())["timings"]
    scoring = sum(json.loads((results / "beside" / r / "best.json").read_text())["test_scoring_task_s"] for r in REGIMES)
    assert timings["scoring_seconds"] == pytest.approx(scoring) and scoring > 0
    assert 0 < timings["slot_busy_share"] < timings["slot_work_share"] <= 1, timings
    # the worker processes the trials ran in: each distinct pid of the epochs the trials reported
    pids = {json.loads(line)["pid"] for line in "".join(
        f.read_text() for f in (results / "beside").glob("*/**/trial_*/result.json")).splitlines()}
    assert timings["trial_processes"] == len(pids) >= 2
    # the report's time table says the steps overlapped, and how long all the regimes took together
    table = "\n".join(timings_section(json.loads((results / "beside" / "study.json").read_text())["timings"]))
    assert "| all regimes, 2 side by side |" in table and "side by side" not in "\n".join(
        timings_section(json.loads((results / "apart" / "study.json").read_text())["timings"]))

    # Ctrl-C as scratch's test scoring is about to start: full, running beside it, stops and saves as well
    original = study_run.Timings.regime_phase

    def regime_phase(self, regime, name):
        if (regime, name) == ("scratch", "test_scoring"):
            raise KeyboardInterrupt
        return original(self, regime, name)

    with monkeypatch.context() as patch:
        patch.setattr(study_run.Timings, "regime_phase", regime_phase)
        assert study_run.main(_argv(study_pairs, results, "cut", space, cache)) == 130
    out = capsys.readouterr().out
    assert "python -m study.run --resume cut" in out
    assert not (results / "cut" / "scratch" / "best.json").exists()
    assert study_run.main(["--resume", "cut", "--results", str(results), "--no-analysis"]) == 0
    resumed = _files(results / "cut")
    for regime in REGIMES:
        for key, expected in apart[regime].items():
            assert resumed[regime][key] == expected, (regime, key)
    counts = json.loads((results / "cut" / "study.json").read_text())["test_scored"]
    assert counts == {"scratch": 1, "full": 1}, counts


def test_experiments_of_one_name_started_in_one_second_stage_their_files_apart(tmp_path, monkeypatch):
    """Tune stages a run's files on the driver in a folder named by its experiment and the second it started, and
    uploads all of it to the experiment: two regimes' `seeds` experiments started in one second shared the folder,
    each uploaded the other's trials and state, and `--resume` restored scratch's seed run under full/seeds ("no
    checkpoint at .../full/seeds/trial_.../checkpoint_000000/state.pt", the side-by-side test's flaky failure).
    Inside `tune_runs_side_by_side`, every run stages apart, whatever the clock says."""
    import ray.tune.utils as tune_utils
    from ray.train._internal.storage import StorageContext

    from study.tuning.internals import tune_runs_side_by_side
    from study.tuning.runner import start_ray

    start_ray(None)
    monkeypatch.setattr(tune_utils, "date_str", lambda: "2026-12-08_03-00-00")  # every run starts in this second

    def staging(regime: str) -> str:
        return StorageContext(str(tmp_path / regime), "seeds").experiment_driver_staging_path

    assert staging("scratch") == staging("full")  # Tune's own: one folder for both
    with tune_runs_side_by_side(threading.Event()):
        assert staging("scratch") != staging("full")
    assert staging("scratch") == staging("full")  # Tune's own again


def test_tune_runs_in_threads_register_their_trainables_one_at_a_time(monkeypatch):
    """Tune's registry of trainables is process-wide and not thread-safe: a registration that comes while another
    thread's is being written to Ray's store changes the dict that one is iterating ("dictionary changed size
    during iteration", as the quick study's first side-by-side run did). Inside `tune_runs_side_by_side` the
    second registration waits for the first; that context also hands every run the study's stop event."""
    import ray
    import ray.tune.registry as registry
    from ray import tune
    from ray.tune import tune as tune_run

    from study.tuning.internals import tune_runs_side_by_side
    from study.tuning.runner import start_ray

    start_ray(None)
    assert ray.is_initialized()
    put, inside, release = registry._internal_kv_put, threading.Event(), threading.Event()

    def held_put(*args, **kwargs):  # thread "first" stops inside its write until released
        if threading.current_thread().name == "first":
            inside.set()
            release.wait(10)
        return put(*args, **kwargs)

    monkeypatch.setattr(registry, "_internal_kv_put", held_put)

    def two_registrations(tag: str) -> tuple[bool, list]:
        """Whether a second registration finished while the first was inside its write, and the errors."""
        inside.clear()
        release.clear()
        errors: list = []

        def register(name: str) -> None:
            try:
                tune.register_trainable(name, lambda config: None)
            except RuntimeError as err:
                errors.append(err)

        first = threading.Thread(target=register, args=(f"{tag}-first",), name="first")
        first.start()
        assert inside.wait(10)
        second = threading.Thread(target=register, args=(f"{tag}-second",), name="second")
        second.start()
        second.join(1.0)
        overlapped = not second.is_alive()
        release.set()
        first.join(10)
        second.join(10)
        return overlapped, errors

    overlapped, errors = two_registrations("unlocked")
    assert overlapped and errors, "without the lock, the second registration runs into the first's"
    stop = threading.Event()
    with tune_runs_side_by_side(stop):
        assert two_registrations("locked") == (False, [])
        assert tune_run._setup_signal_catching() is stop
    assert tune_run._setup_signal_catching.__name__ == "_setup_signal_catching"  # Tune's own again


def test_the_driver_holds_a_trial_slot_while_it_pretrains_and_waiting_regimes_stop_on_ctrl_c(tmp_path):
    """The tiny upstream is pretrained in the driver beside the searches that need none: meanwhile one trial's
    CPUs are held, so Tune starts one trial fewer (not three processes on two cores), and given back after; a
    regime waiting for the upstream stops on Ctrl-C, and one that needs no upstream never waits."""
    from concurrent.futures import Future

    import ray

    from study.config import Budget, Config
    from study.pipeline import StudyRun
    from study.tuning.runner import hold_cpus, start_ray

    start_ray(None)
    cpus = ray.cluster_resources()["CPU"]
    release = hold_cpus(1)
    assert ray.available_resources().get("CPU", 0) == cpus - 1
    release()
    deadline = time.time() + 10
    while ray.available_resources().get("CPU", 0) < cpus and time.time() < deadline:
        time.sleep(0.1)  # the release reaches the scheduler shortly after
    assert ray.available_resources().get("CPU", 0) == cpus

    budget = Budget(num_samples=1, max_epochs=1, max_concurrent=1, cpus_per_trial=1, gpus_per_trial=0,
                    grace_period=None, reduction_factor=None, max_failures=0)
    run = StudyRun(Config(), budget, {}, None, "data without upstream", [], "s", False)
    run.upstream = Future()  # a pretraining that has not ended
    assert run.data_for("scratch") == "data without upstream"
    run.stop.set()
    with pytest.raises(KeyboardInterrupt):
        run.data_for("full")
    run.stop.clear()
    run.upstream.set_result("data with upstream")
    assert run.data_for("full") == "data with upstream" and run.data_for("scratch") == "data without upstream"
