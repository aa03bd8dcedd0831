"""cluster/kuberay-rayjob.yaml: a RayJob KubeRay accepts, that runs the study as study.run parses it, on the
node types cluster.yaml describes. No Kubernetes here: the manifest is checked against KubeRay's published
RayJob schema (tests/data/, with its version and source), and its cluster is read back the way Ray's own
KubeRay autoscaler reads it."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from study.run import build_parser

ROOT = Path(__file__).resolve().parents[1]
RAYJOB = ROOT / "cluster" / "kuberay-rayjob.yaml"
SCHEMA = ROOT / "tests" / "data" / "kuberay-v1.7.0-rayjob-schema.yaml"


def _closed(schema: dict) -> dict:
    """The schema with unknown fields refused wherever it lists an object's fields. Kubernetes drops fields a
    CRD does not know (and `kubectl apply` refuses them, --validate=strict being its default), but the CRD's
    JSON schema alone lets them through: a misspelt `shutdownAfterJobFinishes` would pass unnoticed."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def validator():
    import jsonschema

    return jsonschema.Draft7Validator(_closed(yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load(RAYJOB.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def aws() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text(encoding="utf-8"))


def _errors(validator, document: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_rayjob_matches_kuberays_schema(validator, job):
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")  # the CRD version the schema is
    assert _errors(validator, job) == []
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    # the validator does catch what kubectl would refuse: a misspelt field, a wrong type
    typo = copy.deepcopy(job)
    typo["spec"]["shutdownAfterJobFinish"] = typo["spec"].pop("shutdownAfterJobFinishes")
    assert any("shutdownAfterJobFinish" in e for e in _errors(validator, typo))
    wrong = copy.deepcopy(job)
    wrong["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"] = "three"
    assert any("maxReplicas" in e for e in _errors(validator, wrong))


def test_rayjob_entrypoint_is_a_study_run_the_parser_accepts(job):
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:3] == ["python", "-m", "study.run"]
    args = build_parser().parse_args(words[3:])  # an unknown or malformed flag exits here
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    # joins the cluster KubeRay made, asks for the GPU workers (none exist when the study starts), as many at
    # once as the group may have, and keeps its results where every pod reads and writes
    assert args.address == "auto" and args.gpus_per_trial == 1
    assert args.max_concurrent == workers["maxReplicas"]
    assert args.results.startswith("s3://") and args.resume is None


def test_rayjob_cluster_is_cluster_yamls_node_types(job, aws):
    """Ray's KubeRay autoscaler turns the RayJob's cluster into an autoscaling config of the cluster launcher's
    own shape: its node types must be cluster.yaml's (CPU head, single-GPU workers, same bounds and timeouts)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    ray_cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
                   "metadata": {"name": job["metadata"]["name"], "namespace": "default"},
                   "spec": job["spec"]["rayClusterSpec"]}
    derived = _derive_autoscaling_config_from_ray_cr(ray_cluster)
    k8s_types, aws_types = derived["available_node_types"], aws["available_node_types"]
    assert derived["max_workers"] == aws["max_workers"]
    assert derived["idle_timeout_minutes"] == aws["idle_timeout_minutes"]
    assert derived["upscaling_speed"] == aws["upscaling_speed"]
    head = k8s_types[derived["head_node_type"]]
    assert "GPU" not in head["resources"] and "GPU" not in aws_types[aws["head_node_type"]]["resources"]
    [(name, gpu)] = [(n, t) for n, t in k8s_types.items() if n != derived["head_node_type"]]
    [aws_gpu] = [t for n, t in aws_types.items() if n != aws["head_node_type"]]
    assert {k: gpu["resources"][k] for k in aws_gpu["resources"]} == aws_gpu["resources"]  # {"CPU": 4, "GPU": 1}
    assert gpu["min_workers"] == aws_gpu["min_workers"]
    assert gpu["max_workers"] == aws_gpu.get("max_workers", aws["max_workers"])
    # one Ray everywhere: the RayJob's, the image's (cluster/Dockerfile) and the VM cluster's pin
    version = job["spec"]["rayClusterSpec"]["rayVersion"]
    assert f'"ray[default,tune]=={version}"' in (ROOT / "cluster.yaml").read_text()
    assert f"FROM rayproject/ray:{version}-" in (ROOT / "cluster" / "Dockerfile").read_text()
