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
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_pairs
from test_cluster import LOOPBACK, ROOT, TINY_FLAGS, _ray_processes, _read_lines, finish

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
    from study.outputs.record import study_record
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


# --- the same study on a 2-CPU head alone, on the head with 8 more CPUs, and on a local Ray one trial at a time ----

REGIMES = ("scratch", "full")


def width_study_argv(pairs: Path, cache: Path, space: Path, results: Path, name: str) -> list[str]:
    """Two trained regimes, 6 trials each (width 2: the default, allowed at 6 trials), 2 epochs, ASHA judging at
    epoch 1 on validation loss; TPE proposes from the third trial on, so a proposal that knew different trials
    would show."""
    return ["--regime", ",".join(REGIMES), "--data", str(pairs), "--results", str(results), "--name", name,
            "--cache-dir", str(cache), "--search-space", str(space), "--num-samples", "6", "--max-epochs", "2",
            "--max-train-pairs", "200", "--max-test-pairs", "60", "--pretrain-steps", "30", "--seed", "3",
            "--cpus-per-trial", "1", "--device", "cpu", "--no-analysis", *TINY_FLAGS]


def trials_of(study_dir: Path, regime: str) -> dict[int, dict]:
    """Each trial of the regime by its number: its configuration, the epochs it ran, and every epoch's scores."""
    found = {}
    for result in sorted((study_dir / regime).glob("trial_*/result.json")):
        lines = _read_lines(result)
        number = int(result.parent.name.split("_")[1])
        found[number] = {"config": {k: lines[0]["config"][k] for k in ("lr", "batch_size", "num_beams")},
                         "epochs": [r["epoch"] for r in lines],
                         "val_loss": [r["val_loss"] for r in lines], "val_bleu": [r["val_bleu"] for r in lines]}
    return found


BEST_KEYS = ("lr", "batch_size", "num_beams", "best_epoch", "best_val_bleu", "epochs_run", "epochs_per_trial",
             "trials", "pruned", "test_bleu", "test_loss")


def best_of(study_dir: Path, regime: str) -> dict:
    best = json.loads((study_dir / regime / "best.json").read_text())
    return {k: best[k] for k in BEST_KEYS}


def nodes_used(study_dir: Path) -> set[str]:
    return {r["node_id"] for regime in REGIMES for p in (study_dir / regime).glob("trial_*/result.json")
            for r in _read_lines(p)}


def _private_ray_dir() -> tuple[Path, pytest.MonkeyPatch]:
    temp_dir = Path(tempfile.mkdtemp(prefix="rcw", dir="/tmp"))  # short: Ray's socket paths live under it
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TMPDIR", str(temp_dir))
    env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep 127.0.0.1, not the machine's external IP
    from ray._private import ray_constants  # read at import: this process imported Ray before (the searcher)

    env.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    return temp_dir, env


def _stop_ours(temp_dir: Path) -> list[int]:
    """Wait for the processes under our private Ray dir to end, kill the ones left; return those left."""
    deadline = time.time() + 30
    while (left := _ray_processes(str(temp_dir))) and time.time() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(temp_dir, ignore_errors=True)
    return left


def run_driver(argv: list[str], log: Path, address: str | None = None) -> float:
    """`python -m study.run` as a separate driver process (joining `address`, or a local Ray of its own when None);
    its wall time in seconds."""
    started = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *(["--address", address] if address else []),
                                 *argv], cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        finish(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return time.time() - started


@dataclass
class WidthRuns:
    dirs: dict[str, Path]  # run name -> study folder
    walls: dict[str, float]  # run name -> the driver's wall seconds
    head_node: str
    worker_nodes: set[str]


@pytest.fixture(scope="module")
def width_runs(tmp_path_factory) -> WidthRuns:
    """The same study three times: on a local Ray with --max-concurrent 1 (first: it also fills the data and
    upstream caches, so the two timed cluster runs start equal), on a Ray cluster's 2-CPU head alone, and on the
    same head after two worker nodes of 4 CPUs each joined."""
    import ray
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("width")
    pairs, cache, results = root / "pairs.tsv", root / "cache", root / "results"

    write_pairs(pairs, 1500)
    space = root / "space.yaml"
    space.write_text(SPACE, encoding="utf-8")
    dirs = {name: results / name for name in ("local1", "head", "nodes")}
    walls: dict[str, float] = {}

    temp_dir, env = _private_ray_dir()
    try:
        walls["local1"] = run_driver([*width_study_argv(pairs, cache, space, results, "local1"),
                                      "--max-concurrent", "1"], root / "local1.log")
    finally:
        env.undo()
        left = _stop_ours(temp_dir)
    assert not left, f"the local Ray left processes running: {left}"

    temp_dir, env = _private_ray_dir()
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "node_ip_address": LOOPBACK, "include_dashboard": False})
        walls["head"] = run_driver(width_study_argv(pairs, cache, space, results, "head"), root / "head.log",
                                   cluster.address)
        workers = [cluster.add_node(num_cpus=4, node_ip_address=LOOPBACK) for _ in range(2)]
        cluster.wait_for_nodes()
        walls["nodes"] = run_driver(width_study_argv(pairs, cache, space, results, "nodes"), root / "nodes.log",
                                    cluster.address)
        head_node, worker_nodes = cluster.head_node.node_id, {w.node_id for w in workers}
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        env.undo()
        left = _stop_ours(temp_dir)
    assert not left, f"Ray processes left running after cluster.shutdown(): {left}"
    print(f"\nwall s: local Ray --max-concurrent 1 {walls['local1']:.0f}, 2-CPU head alone {walls['head']:.0f}, "
          f"head + 2 nodes of 4 CPUs {walls['nodes']:.0f}; study.json timings: "
          + ", ".join(f"{n} {json.loads((d / 'study.json').read_text())['timings']}" for n, d in dirs.items()))
    return WidthRuns(dirs, walls, head_node, worker_nodes)


@pytest.mark.slow
def test_a_head_with_8_more_cpus_runs_the_same_search_as_the_head_alone(width_runs):
    head, nodes = width_runs.dirs["head"], width_runs.dirs["nodes"]
    records = {n: json.loads((d / "study.json").read_text()) for n, d in width_runs.dirs.items()}
    # the runs really had different room: 2 slots on the head, 10 with the workers
    assert records["head"]["budget"]["max_concurrent"] == 2 and records["nodes"]["budget"]["max_concurrent"] == 10
    assert nodes_used(head) == {width_runs.head_node}
    assert nodes_used(nodes) & width_runs.worker_nodes, "no trial ran on a worker node"
    for record in records.values():
        assert record["search_widths"] == {"scratch": 2, "full": 2}
    stops = 0
    for regime in REGIMES:
        trials = trials_of(head, regime)
        assert sorted(trials) == list(range(1, 7)), sorted(trials)
        assert trials_of(nodes, regime) == trials, regime
        assert best_of(nodes, regime) == best_of(head, regime), regime
        stops += sum(len(t["epochs"]) < 2 for t in trials.values())
        # TPE proposed from the third trial on: different trials, not one point repeated
        assert len({(t["config"]["lr"], t["config"]["batch_size"]) for t in trials.values()}) == 6, trials
    assert stops, "ASHA stopped nothing: the comparison would not show a rung that knew different trials"


@pytest.mark.slow
def test_max_concurrent_1_runs_the_same_search_as_the_default(width_runs):
    local1, head = width_runs.dirs["local1"], width_runs.dirs["head"]
    assert json.loads((local1 / "study.json").read_text())["budget"]["max_concurrent"] == 1
    for regime in REGIMES:
        assert trials_of(local1, regime) == trials_of(head, regime), regime
        assert best_of(local1, regime) == best_of(head, regime), regime


# --- nodes that declare GPUs (Ray resources only: no CUDA behind them, the trials train on the CPU) ------------------


@pytest.fixture(scope="module")
def gpu_cluster():
    """A 2-CPU head without a GPU; tests add worker nodes that declare GPUs. This process joins it (resource reads)."""
    import ray
    from ray.cluster_utils import Cluster

    temp_dir, env = _private_ray_dir()
    cluster = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "num_gpus": 0, "node_ip_address": LOOPBACK, "include_dashboard": False})
        ray.shutdown()
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        env.undo()
        left = _stop_ours(temp_dir)
    assert not left, f"Ray processes left running after cluster.shutdown(): {left}"


def _gpus_to(cluster, total: int) -> None:
    """Add one node with as many GPUs (and CPUs) as the cluster lacks to have `total`."""
    import ray

    more = total - int(ray.cluster_resources().get("GPU", 0))
    assert more > 0
    cluster.add_node(num_cpus=more, num_gpus=more, node_ip_address=LOOPBACK)
    cluster.wait_for_nodes()
    deadline = time.time() + 30
    while ray.cluster_resources().get("GPU", 0) < total and time.time() < deadline:
        time.sleep(0.2)
    assert ray.cluster_resources()["GPU"] == total


def _min_free_gpu_while(proc: subprocess.Popen) -> float:
    import ray

    low = ray.available_resources().get("GPU", 0.0)
    while proc.poll() is None:
        low = min(low, ray.available_resources().get("GPU", 0.0))
        time.sleep(0.05)
    return low


@pytest.mark.slow
@pytest.mark.parametrize(("fraction", "width"), [(0.5, 2), (0.25, 4)])
def test_fractional_gpus_put_several_trials_on_one_gpu(gpu_cluster, tmp_path, fraction, width):
    """`--gpus-per-trial 0.5` / `0.25` on a cluster whose only GPU is one node's single GPU: Tune holds the whole GPU
    with 2 / 4 trials at once, all on that node (a search of width 2 / 4, so that it proposes that many at once)."""
    import ray

    if ray.cluster_resources().get("GPU", 0) == 0:
        gpu_cluster.add_node(num_cpus=4, num_gpus=1, node_ip_address=LOOPBACK)
        gpu_cluster.wait_for_nodes()
    gpu_nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU")]
    if len(gpu_nodes) != 1 or ray.cluster_resources()["GPU"] != 1:
        pytest.skip("needs a cluster whose only GPU is one node's (run apart from the 3-and-8-GPU test)")
    gpu_node = gpu_nodes[0]
    pairs = tmp_path / "pairs.tsv"

    # Trials long enough that their recorded epochs overlap on a fast idle machine too (600 pairs did not: CI)
    write_pairs(pairs, 2000)
    space = tmp_path / "space.yaml"
    space.write_text(SPACE + f"width: {width}\n", encoding="utf-8")
    log = tmp_path / "driver.log"
    argv = ["--regime", "scratch", "--data", str(pairs), "--results", str(tmp_path / "results"), "--name", "frac",
            "--cache-dir", str(tmp_path / "cache"), "--search-space", str(space), "--num-samples", str(3 * width),
            "--max-epochs", "2", "--max-train-pairs", "1600", "--max-test-pairs", "30", "--seed", "0",
            "--cpus-per-trial", "1", "--gpus-per-trial", str(fraction), "--device", "cpu", "--no-analysis",
            *TINY_FLAGS]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", "--address", gpu_cluster.address, *argv], cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    try:
        low = _min_free_gpu_while(proc)
        finish(proc, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    study_dir = tmp_path / "results" / "frac"
    record = json.loads((study_dir / "study.json").read_text())
    assert record["budget"]["gpus_per_trial"] == fraction and record["budget"]["max_concurrent"] == width
    assert low == 0.0, f"the GPU was never fully held: {width} trials of {fraction} GPU never ran at once"
    trials = [_read_lines(p) for p in (study_dir / "scratch").glob("trial_*/result.json")]
    assert len(trials) == 3 * width and {r["node_id"] for rows in trials for r in rows} == {gpu_node}
    assert most_at_once(trials) == width  # that many trials trained at the same moment, all on the one GPU


def most_at_once(trials: list[list[dict]]) -> int:
    """The most trials surely training at one moment: each trial's span from its first epoch's start to its last
    epoch's report, shrunk by the second that Tune's whole-second `timestamp` may hide at each end."""
    spans = [(rows[0]["timestamp"] + 1 - rows[0]["time_this_iter_s"], rows[-1]["timestamp"]) for rows in trials]
    return max(sum(start <= t < end for start, end in spans) for t, _ in spans)


@pytest.mark.slow
def test_the_paper_presets_search_is_the_same_on_3_and_on_8_gpus(gpu_cluster, tmp_path):
    """What Tune is given for each trained regime of `--preset paper --gpus-per-trial 1` on 3 and on 8 GPU nodes:
    the same searcher, sampler and ASHA in trial order (width 2); only how many trials may run at once differs,
    and that is capped at the width too, so the extra GPUs go to the other regimes, seed runs and scoring."""
    from study.config import PRESETS, Budget
    from study.model.regimes import REGIMES
    from study.tuning.runner import finish_budget, search_tuner
    from study.tuning.searcher import planned_trials, sampler_settings
    from study.tuning.space import default_search_space_path, load_search_space

    paper = PRESETS["paper"]
    designs = {}
    for gpus in (3, 8):
        _gpus_to(gpu_cluster, gpus)
        budget = finish_budget(Budget(num_samples=paper["num_samples"], max_epochs=paper["config"]["epochs"],
                                      max_concurrent=None, cpus_per_trial=1, gpus_per_trial=1, grace_period=None,
                                      reduction_factor=None, max_failures=2), gpu_cluster.address)
        assert budget.max_concurrent == gpus  # the cluster's slots: one trial per GPU
        for regime in (r for r in ("scratch", "decoder", "full") if REGIMES[r].trains):
            space = load_search_space(default_search_space_path(regime))
            n = planned_trials(True, budget.num_samples, space)
            sampler = sampler_settings(budget.searcher, regime, n, 0)
            study_dir = tmp_path / f"gpus{gpus}"
            study_dir.mkdir(exist_ok=True)
            tuner = search_tuner(lambda config: None, regime, budget, space, study_dir, str(study_dir), regime, n,
                                 sampler)
            tune_config = tuner._local_tuner._tune_config
            searcher, scheduler = tune_config.search_alg, tune_config.scheduler
            designs[gpus, regime] = {
                "trials": tune_config.num_samples, "running": tune_config.max_concurrent_trials,
                "proposes_knowing": (searcher._at_once, searcher._planned), "sampler": sampler,
                "judges_against": scheduler.at_once, "rungs": (scheduler._max_t, scheduler._reduction_factor)}
    for regime in ("scratch", "decoder", "full"):
        assert designs[3, regime] == designs[8, regime], regime
        assert designs[3, regime]["proposes_knowing"] == (2, 8) and designs[3, regime]["judges_against"] == 2
        assert designs[3, regime]["running"] == 2
