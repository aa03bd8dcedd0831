"""Running the study on a Ray cluster: cluster.yaml is a config Ray's launcher accepts (and a safe one), and a
study on a real two-node Ray cluster spreads its trials over both nodes and survives losing a worker mid-study.

The clusters here are `ray.cluster_utils.Cluster`s on this machine: a head and worker raylets of their own, bound
to 127.0.0.1, under a private temp dir. The study runs as a separate driver process (`python -m study.run
--address ...`), as a user's would.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import optuna
import pytest
import yaml
from conftest import TINY_FLAGS, write_pairs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
LOOPBACK = "127.0.0.1"
EPOCHS = 2
STUDY_TIMEOUT_S = 420  # generous: the machine is shared; a healthy run takes a minute or two


# --- cluster.yaml -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def launcher_config(raw_config) -> dict:
    """The config as `ray up` sees it after filling in Ray's AWS defaults (before it talks to AWS)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(copy.deepcopy(raw_config))


def test_cluster_yaml_passes_ray_launcher_validation(raw_config, launcher_config):
    import ray
    from ray.autoscaler._private.util import validate_config

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(raw_config, schema)  # the file as written
    validate_config(launcher_config)  # what `ray up` checks: the schema plus Ray's own rules, defaults merged
    # The check has teeth: the same config with a malformed worker resource is rejected.
    broken = copy.deepcopy(launcher_config)
    next(iter(_worker_types(broken).values()))["resources"]["GPU"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)
    assert raw_config["provider"]["type"] == "aws" and raw_config["provider"]["region"]


def _worker_types(config: dict) -> dict:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def test_every_worker_type_has_a_gpu_and_the_head_none(launcher_config):
    workers = _worker_types(launcher_config)
    assert workers, "no worker node type"
    for name, node_type in workers.items():
        resources = node_type["resources"]
        assert resources.get("GPU", 0) >= 1 and resources.get("CPU", 0) >= 1, (name, resources)
        assert node_type["max_workers"] >= 1 and node_type.get("min_workers", 0) == 0, name  # autoscaling from 0
        # A single-GPU instance type (g4dn/g5/g6/g6e up to 16xlarge), advertising exactly its one GPU.
        instance = node_type["node_config"]["InstanceType"]
        assert re.fullmatch(r"(g4dn|g5|g6|g6e)\.(|2|4|8|16)xlarge", instance), instance
        assert resources["GPU"] == 1, (name, instance, resources)
    head = launcher_config["available_node_types"][launcher_config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and not head["node_config"]["InstanceType"].startswith(("g", "p"))
    assert launcher_config["max_workers"] >= 1


PLACEHOLDER_ACCOUNT = "123456789012"  # AWS's documentation account: no real profile lives there


def test_workers_can_write_results_to_s3(launcher_config):
    # Tune's trials persist their checkpoints to --results from the node they run on, and Ray's AWS launcher
    # gives an instance profile (credentials) only to the head: the workers need their own.
    from ray.autoscaler._private.aws.config import DEFAULT_RAY_INSTANCE_PROFILE

    lines = CLUSTER_YAML.read_text(encoding="utf-8").splitlines()
    for name, node_type in _worker_types(launcher_config).items():
        profile = node_type["node_config"].get("IamInstanceProfile", {})
        arn = re.fullmatch(r"arn:aws:iam::(\d{12}):instance-profile/([\w+=,.@/-]+)", profile.get("Arn", ""))
        assert arn, (name, profile)
        account, profile_name = arn.groups()
        # The profile the comments say it is: the one Ray's launcher creates for the head (S3 and EC2 access).
        assert profile_name == DEFAULT_RAY_INSTANCE_PROFILE, (name, profile_name)
        if account == PLACEHOLDER_ACCOUNT:
            # A template may ship AWS's example account only if it tells the user, right there, to change it:
            # a silent placeholder makes `ray up` start workers that cannot write their checkpoints.
            at = next(i for i, line in enumerate(lines) if profile["Arn"] in line and "Arn:" in line)
            above = " ".join(lines[max(0, at - 10):at])
            assert "CHANGE the account id" in above, (name, "the placeholder account is not marked CHANGE")


def _project_mounts(config: dict) -> list[str]:
    """Remote paths that file_mounts fills with this checkout."""
    return [remote for remote, local in config["file_mounts"].items()
            if (ROOT / Path(local).expanduser()).resolve() == ROOT]


def test_project_is_synced_and_installed_on_every_node(launcher_config):
    import ray

    remotes = _project_mounts(launcher_config)
    assert remotes, f"file_mounts does not sync the project: {launcher_config['file_mounts']}"
    targets = {r.rstrip("/") for r in remotes}
    # prepare_config merged setup_commands into each role's list: both roles must install the synced project.
    for role in ("head_setup_commands", "worker_setup_commands"):
        commands = launcher_config[role]
        installs = [c for c in commands for t in targets
                    if re.search(rf"\bpip install\b.*(-e|--editable)\s+{re.escape(t)}/?(\s|$)", c)]
        assert installs, f"{role} never pip-installs the synced project {targets}: {commands}"
        # The GPU workers need PyPI's CUDA torch; the CPU-wheel pin of the laptop instructions must not leak in.
        assert not any(re.search(r"torch\s*==", c) for c in commands), commands
        # The cluster runs the Ray the project is tested with (cluster and client must match).
        pins = {m for c in commands for m in re.findall(r"ray\[[^\]]*\]==([\w.]+)", c)}
        assert pins == {ray.__version__}, pins


def test_results_and_caches_are_not_synced(launcher_config):
    names = {p.strip("/").strip("*") for p in launcher_config["rsync_exclude"]}
    for unwanted in ("results", ".cache", "__pycache__"):
        assert unwanted in names, f"rsync_exclude lets {unwanted}/ through: {launcher_config['rsync_exclude']}"


def test_idle_workers_are_terminated(raw_config):
    assert isinstance(raw_config.get("idle_timeout_minutes"), (int, float))
    assert 0 < raw_config["idle_timeout_minutes"] <= 60


def _open_to_world(rule: dict, port: int) -> bool:
    everyone = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", [])) or any(
        r.get("CidrIpv6") == "::/0" for r in rule.get("Ipv6Ranges", []))
    all_ports = str(rule.get("IpProtocol")) == "-1"
    covers = all_ports or rule.get("FromPort", -1) <= port <= rule.get("ToPort", -1)
    return everyone and covers


def test_dashboard_is_not_opened_to_the_world(launcher_config):
    rules = launcher_config["provider"].get("security_group", {}).get("IpPermissions", [])
    for port in (8265, 6379):  # the dashboard (and job submission), the GCS
        assert not [r for r in rules if _open_to_world(r, port)], rules
    # Ray's defaults start the head with --dashboard-host=0.0.0.0; the config must override that.
    starts = " ".join(launcher_config["head_start_ray_commands"])
    assert "ray start --head" in starts
    hosts = re.findall(r"--dashboard-host[= ](\S+)", starts)
    assert hosts and all(h in ("127.0.0.1", "localhost") for h in hosts), starts
    for node_type in launcher_config["available_node_types"].values():  # Ray's own group, whose rules we know
        assert "SecurityGroupIds" not in node_type["node_config"], "a hand-picked security group: check its rules"


# --- a real two-node Ray cluster on this machine ------------------------------------------------------------------


def _ray_processes(marker: str) -> list[int]:
    """Processes (other than this one) whose command line, environment, working dir or open files mention
    `marker`, our cluster's private temp dir. Ray renames its worker processes (`ray::...`), so the command
    line alone would miss them; their environment and log files still point into the temp dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            texts = [(entry / "cmdline").read_bytes(), (entry / "environ").read_bytes()]
            links = [os.readlink(entry / "cwd")]
            links += [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except (OSError, ValueError):
            continue
        if any(marker.encode() in t for t in texts) or any(marker in link for link in links):
            found.append(int(entry.name))
    return found


@dataclass
class LocalCluster:
    cluster: object  # ray.cluster_utils.Cluster
    temp_dir: Path
    drivers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def head(self):
        return self.cluster.head_node

    def add_worker(self):
        """A fresh worker node (1 CPU) beside the head."""
        return self.cluster.add_node(num_cpus=1, node_ip_address=LOOPBACK)

    def start_study(self, argv: list[str], log: Path) -> subprocess.Popen:
        """`python -m study.run --address <this cluster> ...` as a separate driver process, output to `log`."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "study.run", "--address", self.cluster.address, *argv],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
        self.drivers.append(proc)
        return proc

    def live_results(self) -> dict[str, list[dict]]:
        """Every trial's result.json as the Tune driver writes it, epoch by epoch, on the head node (the copy
        under --results is synced from there only every few seconds)."""
        session = Path(self.head.get_session_dir_path())
        return {p.parent.name: _read_lines(p) for p in session.glob("artifacts/*/*/driver_artifacts/*/result.json")}


def _read_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return lines


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head node (1 CPU) on 127.0.0.1 under a private temp dir, for this module's study (which waits for
    its driver to end); always torn down, with every process it started, even when a test fails."""
    import ray
    from ray.cluster_utils import Cluster

    # Short (Ray's socket paths live under it) and private: this cluster's files, address file and processes
    # never mix with another Ray on the machine.
    temp_dir = Path(tempfile.mkdtemp(prefix="rtc", dir="/tmp"))
    env = pytest.MonkeyPatch()
    env.setenv("RAY_TMPDIR", str(temp_dir))
    # Ray turns "127.0.0.1" into the machine's external IP unless told the cluster is loopback-only.
    env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    cluster = None
    local = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": LOOPBACK, "include_dashboard": False,
            # Notice a dead node within seconds instead of ~half a minute.
            "_system_config": {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                               "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3},
        })
        local = LocalCluster(cluster, temp_dir)
        yield local
    finally:
        for proc in local.drivers if local else []:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        deadline = time.time() + 30
        while (left := _ray_processes(str(temp_dir))) and time.time() < deadline:
            time.sleep(0.5)
        for pid in left:  # ours (they run under our temp dir) and still alive after shutdown: stop them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
        env.undo()
        assert not left, f"Ray processes left running after cluster.shutdown(): {left}"


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "pairs.tsv"
    write_pairs(path, 1500)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cluster-cache")


def study_argv(pairs: Path, cache_dir: Path, results: str, name: str, samples: int) -> list[str]:
    space = cache_dir.parent / f"{name}.yaml"
    # grace_period = the epoch budget: ASHA stops nothing, so every trial must reach the last epoch.
    space.write_text("search:\n"
                     "  lr: {distribution: choice, values: [3.0e-3, 2.0e-3]}\n"
                     "  num_beams: {distribution: choice, values: [1]}\n"
                     "fixed: {batch_size: 16}\n"
                     f"asha: {{grace_period: {EPOCHS}, reduction_factor: 2}}\n", encoding="utf-8")
    return ["--regime", "scratch", "--data", str(pairs), "--results", results, "--name", name,
            "--cache-dir", str(cache_dir), "--search-space", str(space), "--num-samples", str(samples),
            "--max-epochs", str(EPOCHS), "--cpus-per-trial", "1", "--max-concurrent", "2", "--max-failures", "2",
            "--seed", "0", "--no-analysis", *TINY_FLAGS, "--max-eval-pairs", "60",
            "--seeds", "1"]  # the search only: no re-training of the best configuration with more seeds


def finish(proc: subprocess.Popen, log: Path, detail: Callable[[], str] | None = None,
           timeout_s: float = STUDY_TIMEOUT_S) -> str:
    """Wait for a study driver (killing it past `timeout_s`); assert it succeeded; return its log.
    `detail` adds more to the failure message (e.g. the autoscaler's log)."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    out = log.read_text(errors="replace")
    assert proc.returncode == 0, (f"study exited with {proc.returncode}:\n{out[-6000:]}"
                                  + (f"\n{detail()}" if detail else ""))
    return out


def stored_results(study_dir: Path) -> dict[str, list[dict]]:
    return {p.parent.name: _read_lines(p) for p in (study_dir / "scratch").glob("*/result.json")}


def test_study_spreads_trials_over_both_nodes_and_survives_losing_a_worker_mid_trial(ray_cluster, pairs, cache_dir,
                                                                                     tmp_path):
    worker = ray_cluster.add_worker()
    head = ray_cluster.head
    assert head.node_id != worker.node_id
    log = tmp_path / "driver.log"
    # Results at a storage URI, as on a real cluster (s3://...): Tune's trials write their checkpoints there
    # from whichever node they run on, and the restarted trial reads its checkpoint back from there.
    results_uri = (tmp_path / "results").as_uri()
    assert results_uri.startswith("file:///")
    # 6 trials: the search's width (two trials proposed at once) is at most a third of them (study.tuning.searcher)
    proc = ray_cluster.start_study(study_argv(pairs, cache_dir, results_uri, "lose", samples=6), log)

    # Wait until a trial on the worker has reported (and checkpointed) epoch 1 and is training epoch 2.
    victim, before = None, []
    deadline = time.time() + STUDY_TIMEOUT_S
    while victim is None and proc.poll() is None and time.time() < deadline:
        for trial, lines in ray_cluster.live_results().items():
            if lines and lines[-1]["node_id"] == worker.node_id and lines[-1]["epoch"] < EPOCHS:
                victim, before = trial, lines  # one read: a second one could already hold the next epoch
        time.sleep(0.1)
    assert victim, f"no trial reached the worker mid-run:\n{log.read_text(errors='replace')[-4000:]}"
    ray_cluster.cluster.remove_node(worker, allow_graceful=False)  # the worker dies, as a reclaimed spot node would
    fresh = ray_cluster.add_worker()  # and a replacement joins: capacity stays two trials
    out = finish(proc, log)

    study_dir = tmp_path / "results" / "lose"
    results = stored_results(study_dir)
    assert len(results) == 6, sorted(results)  # no trial lost
    for trial, lines in results.items():  # every trial finished, none ran an epoch twice
        assert [r["epoch"] for r in lines] == list(range(1, EPOCHS + 1)), (trial, lines)
    # The interrupted trial kept the epochs it had reported on the dead worker and went on from its checkpoint
    # on a live node: Tune restored it (iterations_since_restore restarts) instead of re-running it from scratch.
    lines = results[victim]
    # The epochs it reported on the worker: those seen before the kill, and any it reported in the moment
    # between that read and the kill.
    done_on_worker = next((i for i, r in enumerate(lines) if r["node_id"] != worker.node_id), len(lines))
    assert done_on_worker >= len(before)
    assert [r["epoch"] for r in lines[:len(before)]] == [r["epoch"] for r in before]
    assert done_on_worker < EPOCHS, f"{victim} finished on the worker before it was removed: nothing to resume"
    resumed = lines[done_on_worker:]
    assert resumed and all(r["node_id"] in {head.node_id, fresh.node_id} for r in resumed), lines
    assert [r["iterations_since_restore"] for r in resumed] == list(range(1, len(resumed) + 1)), resumed
    assert [r["training_iteration"] for r in lines] == list(range(1, EPOCHS + 1))
    # Spread: one CPU per node, one per trial, two trials at once: the victim ran on the worker while another
    # trial ran on the head.
    for trial, lines in results.items():
        assert {r["node_ip"] for r in lines} == {LOOPBACK}, trial
    first_epochs = {lines[0]["node_id"] for lines in results.values()}
    assert {head.node_id, worker.node_id} <= first_epochs, (head.node_id, worker.node_id, first_epochs)
    # Optuna saw every trial complete (a node death is not a trial failure once the retry succeeded), and the
    # regime's best trial was scored.
    study = optuna.load_study(study_name="scratch", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6, out[-3000:]
    assert (study_dir / "scratch" / "best.json").exists()
