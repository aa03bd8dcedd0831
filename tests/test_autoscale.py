"""`ray up cluster.yaml`, rehearsed on this machine: a study's GPU trials make the autoscaler launch workers of
the GPU type cluster.yaml declares, the trials run on those workers, and the workers are released once idle.

Ray's fake multinode provider (Ray's docs: "Testing Autoscaling Locally") plays the cloud. The head's autoscaler
reads a config built from cluster.yaml's own `available_node_types` (resources, min/max workers) and global
limits, and "launches" a worker by starting a raylet that advertises that type's resources on this machine. The
fake GPUs have no CUDA behind them, so the trials fall back to the CPU. The AWS half of cluster.yaml (instances,
setup commands, security) is not exercised here: test_cluster.py checks that part.

Safe beside any other Ray on the machine (a user's study, another test): the cluster is one `ray start --head` of
its own, on free ports, under a private temp dir, with a token of its own; teardown stops only the processes
that belong to that dir. Never `ray stop` (which `AutoscalingCluster.start/shutdown` run): it kills every Ray
process on the machine.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import TINY_FLAGS, write_pairs

# The one helper that finds a cluster's processes by its temp dir (Ray renames its workers; see its docstring).
from test_cluster import _ray_processes, finish

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
HEAD_CPUS = 1  # cluster.yaml's head has CPUs and no GPU: trials asking for a GPU can never land there
# Seconds, not cluster.yaml's 10 minutes: the test waits for the release.
IDLE_TIMEOUT_MINUTES = 0.2
# Every fake node runs on this machine, and a raylet sizes its object store at 30% of the machine's memory by
# default; the study ships a few hundred tokenized pairs, so a small store each is plenty.
OBJECT_STORE_BYTES = 200 * 2**20
SAMPLES = 2
# Generous: the machine is shared. Healthy, on an idle machine: the study ~2 min, the release ~15 s after.
STUDY_TIMEOUT_S = 480
RELEASE_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def launcher_config() -> dict:
    """cluster.yaml as `ray up` sees it: Ray's defaults filled in (e.g. each node type's max_workers)."""
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(yaml.safe_load(CLUSTER_YAML.read_text(encoding="utf-8")))


def gpu_worker_types(launcher: dict) -> dict[str, dict]:
    return {name: t for name, t in launcher["available_node_types"].items()
            if name != launcher["head_node_type"] and t["resources"].get("GPU", 0) >= 1}


def autoscaling_config(launcher: dict, gcs_address: str) -> dict:
    """The config the head's autoscaler runs with: cluster.yaml's node types and scaling limits, on the fake
    provider. Ray's wheel lacks the fake provider's example.yaml that AutoscalingCluster starts from, so the
    keys it would supply are here: nodes without SSH, updaters or launch configs, and no commands to run."""
    from ray.autoscaler._private.util import validate_config

    head_type = launcher["head_node_type"]
    node_types = {
        name: {"resources": {**t["resources"], "object_store_memory": OBJECT_STORE_BYTES}, "node_config": {},
               "min_workers": t.get("min_workers", 0), "max_workers": t["max_workers"]}
        for name, t in launcher["available_node_types"].items() if name != head_type}
    node_types[head_type] = {"resources": {"CPU": HEAD_CPUS}, "node_config": {}, "max_workers": 0}
    config = {
        "cluster_name": f"{launcher['cluster_name']}-rehearsal",
        "max_workers": launcher["max_workers"], "upscaling_speed": launcher["upscaling_speed"],
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        # gcs_address: the provider would otherwise point new workers at port 6379, where another cluster may be.
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": node_types, "head_node_type": head_type,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        **{key: [] for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                               "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")},
    }
    validate_config(config)  # a bad config fails here, not as a monitor that silently never scales
    return config


# --- reading the autoscaler ------------------------------------------------------------------------------------


@dataclass
class Status:
    """One "Autoscaler status" block, the text `ray status` prints, as the monitor logs it each update."""

    time: datetime
    active: dict[str, int]  # node type -> nodes up
    pending: str  # "(no pending nodes)" or the nodes being launched
    totals: dict[str, float]  # CPU/GPU -> what the cluster advertises

    @classmethod
    def parse(cls, block: str) -> Status:
        nodes, _, resources = block.partition("Resources\n")
        active, _, rest = nodes.partition("Active:\n")[2].partition("Pending:\n")
        pending = rest.partition("Recent failures:")[0]
        return cls(time=datetime.fromisoformat(re.match(r"Autoscaler status: (\S+ \S+)", block).group(1)),
                   active={name: int(n) for n, name in re.findall(r"^ (\d+) (\S+)$", active, re.M)},
                   pending=" ".join(pending.split()),
                   totals={name: float(total) for total, name in re.findall(r"^ [\d.]+/([\d.]+) (CPU|GPU)\b",
                                                                            resources, re.M)})

    def workers(self, node_types) -> int:
        return sum(n for name, n in self.active.items() if name in node_types)


STATUS_HEADER = "======== Autoscaler status: "


@dataclass
class FakeAutoscalingCluster:
    temp_dir: Path
    address: str
    env: dict[str, str]  # what every process talking to this cluster needs (its token, loopback only)
    drivers: list[subprocess.Popen] = field(default_factory=list)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.temp_dir / "session_latest" / "logs" / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else f"({name} missing)"

    def monitor_log_exists(self) -> bool:
        return (self.temp_dir / "session_latest" / "logs" / "monitor.log").exists()

    def monitor_log(self) -> str:
        return (self.temp_dir / "session_latest" / "logs" / "monitor.log").read_text(errors="replace")

    def statuses(self) -> list[Status]:
        blocks = self.monitor_log().split(STATUS_HEADER)[1:]
        # The last block may still be being written.
        return [Status.parse("Autoscaler status: " + b) for b in blocks if "Pending Demands" in b]

    def released_idle(self) -> set[str]:
        """Node ids the autoscaler terminated because they were idle."""
        return set(re.findall(r"Terminating the node with id (\w+) and ip \S+ \(idle\)", self.monitor_log()))

    def ray_status(self) -> str:
        """`ray status`, as a user would run it on the head."""
        return subprocess.run([ray_cli(), "status", "--address", self.address], env=self.env, text=True,
                              capture_output=True, timeout=120, check=True).stdout

    def nodes(self) -> list[dict]:
        """`ray.nodes()` from a driver of its own: every node that ever joined, dead ones included."""
        code = f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR'); print(json.dumps(ray.nodes()))"
        out = subprocess.run([sys.executable, "-c", code], env=self.env, text=True, capture_output=True,
                             timeout=120, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def start_study(self, argv: list[str], log: Path) -> subprocess.Popen:
        """`python -m study.run --address <this cluster> ...` as a separate driver process, output to `log`."""
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "study.run", "--address", self.address, *argv], cwd=ROOT,
                                    env={**self.env, "PYTHONUNBUFFERED": "1"}, stdout=out, stderr=subprocess.STDOUT,
                                    text=True, start_new_session=True)
        self.drivers.append(proc)
        return proc


def ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")  # the `ray` of this interpreter, not whatever PATH finds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture
def fake_cluster(launcher_config):
    """A head (HEAD_CPUS CPUs, no GPU) whose autoscaler runs cluster.yaml's node types on the fake provider;
    always torn down, with every process it (and its autoscaler) started, even when the test fails."""
    temp_dir = Path(tempfile.mkdtemp(prefix="ras", dir="/tmp"))  # short: Ray's socket paths live under it
    port = free_port()
    address = f"127.0.0.1:{port}"
    config_file = temp_dir / "autoscaling.yaml"
    config_file.write_text(yaml.safe_dump(autoscaling_config(copy.deepcopy(launcher_config), address)))
    env = {**os.environ,
           # What AutoscalingCluster.start sets: the fake provider refuses to run without RAY_FAKE_CLUSTER; the
           # autoscaler updates every second instead of every five.
           "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           # Every node (the fake workers too: the autoscaler starts them with its own environment) under our
           # temp dir, bound to the loopback address; a token of this cluster's own.
           "RAY_TMPDIR": str(temp_dir), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    cluster = FakeAutoscalingCluster(temp_dir, address, env)
    try:
        subprocess.run([ray_cli(), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                        f"--temp-dir={temp_dir}", f"--num-cpus={HEAD_CPUS}", "--num-gpus=0",
                        f"--object-store-memory={OBJECT_STORE_BYTES}", "--include-dashboard=false",
                        # Its default, 52365, is fixed: a second cluster on the machine would collide.
                        f"--dashboard-agent-listen-port={free_port()}",
                        f"--autoscaling-config={config_file}", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, text=True, timeout=180)
        deadline = time.time() + 120  # the autoscaler (the head's monitor process) is up once it logs a status
        while not (monitor_up := cluster.monitor_log_exists() and cluster.statuses()) and time.time() < deadline:
            time.sleep(1)
        assert monitor_up, f"the autoscaler never reported:\n{cluster.log_tail('monitor.err')}"
        yield cluster
    finally:
        for proc in cluster.drivers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        _stop(_ray_processes(str(temp_dir)), signal.SIGTERM)
        deadline = time.time() + 5  # Ray's processes that honour SIGTERM are gone within seconds; the rest get SIGKILL
        while (left := _ray_processes(str(temp_dir))) and time.time() < deadline:
            time.sleep(0.5)
        _stop(left, signal.SIGKILL)
        time.sleep(1)
        left = _ray_processes(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the fake cluster still running after SIGKILL: {left}"


def study_argv(tmp_path: Path) -> list[str]:
    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, 400)
    space = tmp_path / "space.yaml"
    space.write_text("search:\n"
                     "  lr: {distribution: choice, values: [3.0e-3, 2.0e-3]}\n"
                     "  num_beams: {distribution: choice, values: [1]}\n"
                     "fixed: {batch_size: 16}\n"
                     "asha: {grace_period: 1, reduction_factor: 2}\n", encoding="utf-8")
    return ["--regime", "scratch", "--data", str(pairs), "--results", str(tmp_path / "results"), "--name", "scale",
            "--cache-dir", str(tmp_path / "cache"), "--search-space", str(space), "--num-samples", str(SAMPLES),
            "--max-epochs", "1", "--cpus-per-trial", "1", "--gpus-per-trial", "1", "--max-concurrent", "2",
            "--seed", "0", "--no-analysis", *TINY_FLAGS, "--max-eval-pairs", "20", "--max-test-pairs", "20",
            # the search alone: seed re-runs take a trial's resources too (test_conclusions.py checks where)
            "--seeds", "1"]


def test_study_scales_up_cluster_yaml_gpu_workers_runs_there_and_releases_them(fake_cluster, launcher_config,
                                                                                 tmp_path):
    gpu_types = gpu_worker_types(launcher_config)
    assert gpu_types, "cluster.yaml declares no GPU worker type"
    assert fake_cluster.statuses()[-1].workers(gpu_types) == 0  # the cluster starts with no worker, as on AWS

    log = tmp_path / "driver.log"
    started = datetime.now()
    proc = fake_cluster.start_study(study_argv(tmp_path), log)
    finish(proc, log, lambda: f"--- monitor.log ---\n{fake_cluster.log_tail('monitor.log')}",
                 timeout_s=STUDY_TIMEOUT_S)
    finished = datetime.now()
    study_dir = tmp_path / "results" / "scale"
    assert (study_dir / "scratch" / "best.json").exists() and (study_dir / "summary.csv").exists()

    # Released: no worker up or being launched, within the idle timeout (plus the autoscaler's own pace).
    deadline = time.time() + RELEASE_TIMEOUT_S
    while time.time() < deadline:
        last = fake_cluster.statuses()[-1]
        if last.workers(gpu_types) == 0 and last.pending == "(no pending nodes)":
            break
        time.sleep(2)
    statuses = fake_cluster.statuses()
    assert statuses[-1].workers(gpu_types) == 0 and statuses[-1].pending == "(no pending nodes)", statuses[-1]

    # Scaled up: workers of cluster.yaml's GPU type, never more than it allows, advertising its resources.
    up = [s for s in statuses if s.workers(gpu_types)]
    assert up, f"no GPU worker was ever launched:\n{fake_cluster.log_tail('monitor.log')}"
    assert max(s.workers(gpu_types) for s in up) <= min(launcher_config["max_workers"],
                                                         sum(t["max_workers"] for t in gpu_types.values()))
    assert set().union(*(s.active for s in statuses)) <= {launcher_config["head_node_type"], *gpu_types}

    def advertised(status: Status) -> dict[str, float]:
        totals = {"CPU": HEAD_CPUS, "GPU": 0.0}
        for name, n in status.active.items():
            for resource in totals:
                totals[resource] += n * gpu_types.get(name, {}).get("resources", {}).get(resource, 0)
        return totals

    # (Resource totals lag a node's arrival by an update or two: some settled moment must show them.)
    assert any(s.pending == "(no pending nodes)" and s.totals == advertised(s) for s in up), up

    # Every trial ran, on a worker the autoscaler launched and later released as idle - never on the head.
    nodes = fake_cluster.nodes()
    heads = [n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"]]
    assert len(heads) == 1, nodes
    released = fake_cluster.released_idle()
    results = {str(p.parent.relative_to(study_dir)): [json.loads(line) for line in p.read_text().splitlines()]
               for p in (study_dir / "scratch").rglob("result.json")}
    assert len([name for name in results if name.count("/") == 1]) == SAMPLES, sorted(results)
    ran_on = {r["node_id"] for lines in results.values() for r in lines}
    # The regime's test scoring asks for a trial's resources as well: a worker's GPU, not the head's CPU.
    ran_on.add(json.loads((study_dir / "scratch" / "best.json").read_text())["scored_node_id"])
    assert heads[0] not in ran_on, (heads, ran_on)
    assert ran_on <= released, (ran_on, released)  # full ids: the fake ones differ only in their last digits
    alive = {n["NodeID"] for n in nodes if n["Alive"]}
    assert alive == set(heads), nodes

    # What a user sees: `ray status` works against the cluster and lists the head alone again.
    status_text = fake_cluster.ray_status()
    assert Status.parse(status_text[status_text.index("Autoscaler status: "):]).active == {
        launcher_config["head_node_type"]: 1}, status_text

    gone = next(s for s in statuses if s.time > up[-1].time)
    print(f"\nautoscaling rehearsal: first GPU worker up {(up[0].time - started).total_seconds():.0f} s after the "
          f"study started, peak {max(s.workers(gpu_types) for s in up)} worker(s); study done after "
          f"{(finished - started).total_seconds():.0f} s; last worker gone at "
          f"{(gone.time - started).total_seconds():.0f} s")
