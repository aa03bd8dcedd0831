"""Without --address a study starts a Ray of its own: it never joins a cluster someone else started on the
machine (which `ray.init()` with no address does, silently, through the address Ray records in its temp dir);
`--address auto` joins one explicitly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOINED = ("import ray; from study.tuning.runner import start_ray; start_ray({address!r}); "
          "print(ray.get_runtime_context().gcs_address)")


@pytest.mark.slow
def test_a_study_without_address_never_joins_a_cluster_started_by_someone_else():
    from ray.cluster_utils import Cluster

    # A head started in this process's Ray temp dir (per xdist worker, tests/conftest.py), as `ray start
    # --head` would be: it records its address there.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        def gcs_address(address: str | None) -> str:
            run = subprocess.run([sys.executable, "-c", JOINED.format(address=address)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr[-3000:]
            return run.stdout.strip().splitlines()[-1]

        bare = subprocess.run([sys.executable, "-c", "import ray; ray.init(); print(ray.get_runtime_context()"
                               ".gcs_address)"], capture_output=True, text=True, timeout=300)
        assert bare.stdout.strip().splitlines()[-1] == cluster.address  # the trap: a bare ray.init() joins it
        assert gcs_address(None) != cluster.address  # the study's default: a Ray of its own
        assert gcs_address("auto") == cluster.address  # asked for explicitly, it joins
    finally:
        cluster.shutdown()
