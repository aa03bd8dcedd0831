"""Conclusions with their uncertainty: multi-reference BLEU that the sacrebleu command line re-scores exactly,
paired bootstrap p-values that agree with `sacrebleu --paired-bs`, and report sentences that follow the
interval; then a tiny study with seeds whose spread reaches best.json and the analysis."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from study.metrics.scoring import multi_reference_bleu, references_by_source, translation_scores
from study.metrics.significance import paired_bootstrap
from study.results.test_scoring import write_test_texts

SHARED_FRA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fra.txt"


def sacrebleu_cli(refs: list[Path], hyps: list[Path], *extra: str) -> str:
    return subprocess.run([sys.executable, "-m", "sacrebleu", *map(str, refs), "-i", *map(str, hyps), "-m", "bleu",
                           *extra], capture_output=True, text=True, check=True).stdout


def test_multi_reference_bleu_on_tatoeba_is_rescored_exactly_by_the_cli(tmp_path):
    if not SHARED_FRA.exists():
        pytest.skip(f"{SHARED_FRA} not present")
    from study.config import Config
    from study.data.pairs import load_splits

    splits, _ = load_splits(Config(data=str(SHARED_FRA), cache_dir=str(tmp_path / "cache")))
    test = splits["test"]
    # The rows of the split's first 3,000 distinct sources (all their references): a test-sized set.
    kept = set(list(dict.fromkeys(test["en"]))[:3000])
    rows = [(en, fr) for en, fr in zip(test["en"], test["fr"]) if en in kept]
    sources, references = [en for en, _ in rows], [fr for _, fr in rows]
    # A hypothesis set without a model: each source's first reference, its last word dropped on every third
    # source so that BLEU is not simply 100; every row of a source gets the same hypothesis, as in `evaluate`.
    first: dict[str, str] = {}
    for en, fr in zip(sources, references):
        first.setdefault(en, fr if len(first) % 3 else " ".join(fr.split()[:-1]))
    hypotheses = [first[en] for en in sources]
    multi = write_test_texts(tmp_path, sources, {"hypotheses": hypotheses, "references": references})

    assert multi["multi_reference_sources"] >= 300 and multi["max_references"] >= 2, multi
    assert multi["sources"] == len(first) < len(sources)
    streams = sorted(tmp_path.glob("test.ref.[0-9]*.txt"), key=lambda p: int(p.name.split(".")[2]))
    assert len(streams) == multi["max_references"] and f"nrefs:{len(streams)}" in multi["bleu_multi_signature"]
    cli_multi = float(sacrebleu_cli(streams, [tmp_path / "test.hyp.multi.txt"], "-b", "-w", "4"))
    assert cli_multi == round(multi["bleu_multi"], 4)
    # Padding a source's missing references with its own first one scores exactly what sacrebleu's
    # variable-reference API (None placeholders) scores.
    distinct, refs = references_by_source(sources, hypotheses, references)
    depth = max(map(len, refs))
    with_none = [[r[k] if k < len(r) else None for r in refs] for k in range(depth)]
    assert multi["bleu_multi"] == sacrebleu.corpus_bleu(distinct, with_none).score
    one_ref = translation_scores(hypotheses, references)["bleu"]
    cli_one = float(sacrebleu_cli([tmp_path / "test.ref.txt"], [tmp_path / "test.hyp.txt"], "-b", "-w", "4"))
    assert cli_one == round(one_ref, 4)
    # A translation that matches a sibling reference now counts: the multi-reference score is higher.
    assert multi["bleu_multi"] > one_ref + 5, (multi["bleu_multi"], one_ref)


def test_multi_reference_scoring_scores_each_source_once_against_all_its_references():
    sources = ["I run.", "I run.", "Hi."]
    references = ["Je cours.", "Je me sauve.", "Salut."]
    hypotheses = ["Je me sauve.", "Je me sauve.", "Salut."]
    multi = multi_reference_bleu(sources, hypotheses, references)
    assert multi["sources"] == 2 and multi["multi_reference_sources"] == 1 and multi["bleu_multi"] == pytest.approx(100.0)
    assert translation_scores(hypotheses, references)["bleu"] < 100.0


def _systems(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    """References and three systems: `weak` and `strong` far apart, `twin` = `weak` with a few sentences made
    right and as many made wrong, so that resampling moves their difference either way."""
    rng = random.Random(seed)
    words = "le la chat chien maison est noir blanc il elle mange voit grand petit rouge vert".split()
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 12))) for _ in range(n)]

    def noisy(keep: float) -> list[str]:
        return [" ".join(w if rng.random() < keep else rng.choice(words) for w in r.split()) for r in refs]

    weak, strong = noisy(0.45), noisy(0.7)
    twin = list(weak)
    picked = rng.sample(range(n), 8)
    for i in picked[:4]:
        twin[i] = refs[i]
    for i in picked[4:]:
        twin[i] = " ".join(rng.choice(words) for _ in refs[i].split())
    return refs, weak, strong, twin


def test_paired_bootstrap_agrees_with_the_sacrebleu_cli(tmp_path):
    refs, weak, strong, _ = _systems(300)
    for name, lines in (("ref", refs), ("weak", weak), ("strong", strong)):
        (tmp_path / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = paired_bootstrap(refs, weak, strong)
    cli = json.loads(sacrebleu_cli([tmp_path / "ref.txt"], [tmp_path / "weak.txt", tmp_path / "strong.txt"],
                                   "--paired-bs", "--paired-bs-n", "1000", "-f", "json"))
    baseline, system = cli[0]["BLEU"], cli[1]["BLEU"]
    assert ours["p_value"] == system["p_value"] and ours["bleu_system"] == system["score"]
    assert ours["bleu_baseline"] == baseline["score"]
    # The difference's interval is read off sacrebleu's very resamples: the resampled means are its means.
    assert ours["mean_system"] == pytest.approx(system["mean"], abs=1e-9)
    assert ours["mean_baseline"] == pytest.approx(baseline["mean"], abs=1e-9)
    assert ours["ci_low"] <= ours["difference"] <= ours["ci_high"] and ours["significant"] and ours["ci_low"] > 0
    assert "bs:1000" in ours["signature"] and "seed:12345" in ours["signature"]


def test_a_tiny_difference_is_not_significant():
    refs, weak, _, twin = _systems(300)
    result = paired_bootstrap(refs, weak, twin)
    assert 0 < result["difference"] < 2 and result["ci_low"] < 0 < result["ci_high"]
    assert not result["significant"] and result["p_value"] > 0.05


def _fake_study(path: Path, systems: dict[str, list[str]], refs: list[str], seeds: int = 1) -> Path:
    """A finished study's files as the analysis reads them (study.json, each regime's best.json and test
    texts), without training anything."""
    path.mkdir(parents=True)
    (path / "study.json").write_text(json.dumps({"name": path.name, "regimes": list(systems), "preset": "quick",
                                                 "config": {"model": "tiny", "data": "sample"},
                                                 "budget": {"max_epochs": 1, "seeds": seeds}}))
    for regime, hyps in systems.items():
        (path / regime).mkdir()
        (path / regime / "test.hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
        (path / regime / "test.ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
        bleu = translation_scores(hyps, refs)["bleu"]
        (path / regime / "best.json").write_text(json.dumps({
            "regime": regime, "trial_id": f"t_{regime}", "test_bleu": bleu, "test_bleu_mean": bleu,
            "test_bleu_sd": None, "test_bleu_n": 1, "best_val_bleu": bleu, "trainable_params": 1,
            "config": {"model": "tiny"}}))
    return path


def test_report_calls_a_difference_a_finding_only_when_its_interval_excludes_zero(tmp_path):
    from study.analysis import conclusions
    from study.analysis.load import load
    from study.analysis.report import markdown_table

    refs, weak, strong, twin = _systems(300)
    study = _fake_study(tmp_path / "fake", {"full": strong, "decoder": twin, "scratch": weak}, refs)
    a = load(study)
    pairs = conclusions.pairwise(a).set_index(["a", "b"])
    assert set(pairs.index) == {("full", "decoder"), ("full", "scratch"), ("decoder", "scratch")}
    assert pairs.loc[("full", "scratch"), "significant"] and not pairs.loc[("decoder", "scratch"), "significant"]
    # The table's p-value is what the sacrebleu command line prints for the files the study wrote.
    cli = json.loads(sacrebleu_cli([study / "scratch" / "test.ref.txt"],
                                   [study / "scratch" / "test.hyp.txt", study / "full" / "test.hyp.txt"],
                                   "--paired-bs", "-f", "json"))
    assert cli[1]["BLEU"]["p_value"] == pairs.loc[("full", "scratch"), "p_value"]

    text = "\n".join(conclusions.section(a, markdown_table))
    assert "`full` − `scratch`" in text and "a finding, `full` translates this test set better" in text
    not_found = next(line for line in text.splitlines() if line.startswith("- `decoder` − `scratch`"))
    assert not_found.endswith(f"{conclusions.NO_DIFFERENCE}.") and "finding" not in not_found
    claims = conclusions.original_claims(conclusions.pairwise(a))
    assert "not borne out here" in claims[0]  # decoder ≈ full: full is significantly better here
    assert any("against `full`" in c and "significantly worse here" in c for c in claims)
    assert any("against `decoder`" in c and "not significantly worse here" in c for c in claims)
    assert "skipped: the study has no optuna.db" in text and not (study / "optuna.db").exists()


@pytest.mark.slow
def test_seed_runs_and_test_scoring_run_like_trials_on_the_gpu_worker(tmp_path, monkeypatch):
    """A head without GPUs and a worker with one (Ray's fake resources: no CUDA, so torch runs on CPU): with
    --gpus-per-trial 1 the search, the seed re-run and the test scoring all run on the worker; best.json gives
    the spread over both seeds and names the node that scored; the trials table holds each seed's score."""
    import ray
    from ray.cluster_utils import Cluster

    from study.analysis.load import load
    from study.data.sample import corpus
    from study.run import main as run_main

    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{en}\t{fr}\n" for en, fr in corpus.generate_pairs(400, seed=0)), encoding="utf-8")
    space = tmp_path / "space.yaml"
    space.write_text("search:\n  lr: {distribution: choice, values: [3.0e-3]}\n"
                     "  num_beams: {distribution: choice, values: [1]}\nfixed: {batch_size: 16}\n", encoding="utf-8")
    temp_dir = Path(__import__("tempfile").mkdtemp(prefix="rsc", dir="/tmp"))  # short: Ray's socket paths
    monkeypatch.setenv("RAY_TMPDIR", str(temp_dir))
    ray.shutdown()  # an in-process study that ran before in this worker keeps its local Ray up (start_ray)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1, num_gpus=1)
        head_id, worker_id = cluster.head_node.node_id, worker.node_id
        ray.init(address=cluster.address)
        code = run_main(["--regime", "scratch", "--data", str(pairs), "--results", str(tmp_path / "results"),
                         "--name", "placed", "--cache-dir", str(tmp_path / "cache"), "--search-space", str(space),
                         "--num-samples", "1", "--max-epochs", "1", "--seeds", "2", "--gpus-per-trial", "1",
                         "--max-concurrent", "1", "--address", cluster.address, "--no-analysis",
                         "--tiny-d-model", "32", "--tiny-layers", "1", "--tiny-heads", "2", "--tiny-d-ff", "64",
                         "--tiny-vocab-size", "300", "--max-eval-pairs", "20", "--max-test-pairs", "30"])
    finally:
        ray.shutdown()
        cluster.shutdown()
        __import__("shutil").rmtree(temp_dir, ignore_errors=True)
    assert code == 0
    study = tmp_path / "results" / "placed"
    best = json.loads((study / "scratch" / "best.json").read_text())
    assert worker_id != head_id
    assert best["scored_node_id"] == worker_id and best["scored_device"] == "cpu"
    assert [s["seed"] for s in best["seeds"]] == [0, 1]
    assert all(s["node_id"] == worker_id for s in best["seeds"])
    bleus = [s["test_bleu"] for s in best["seeds"]]
    assert best["test_bleu_n"] == 2 and best["test_bleu_mean"] == pytest.approx(sum(bleus) / 2)
    assert best["test_bleu_sd"] == pytest.approx(abs(bleus[0] - bleus[1]) / 2 ** 0.5)
    assert best["test_bleu"] == bleus[0]  # the search's own run stays the ranked figure
    assert (study / "scratch" / "test.hyp.seed1.txt").exists()
    # Scored, the seed re-run keeps no checkpoint: the search's best checkpoint is the study's only one.
    assert sorted(study.rglob("checkpoint_*")) == [Path(best["checkpoint"])]

    a = load(study)
    runs = a.trials.set_index("run")
    assert sorted(a.trials["run"]) == ["search", "seeds"] and int(runs.loc["seeds", "seed"]) == 1
    assert runs.loc["seeds", "test_bleu"] == pytest.approx(bleus[1]) and runs.loc["search", "test_bleu"] == bleus[0]
    row = a.comparison.set_index("regime").loc["scratch"]
    assert row["test_bleu_n"] == 2 and row["trials"] == 1  # the seed re-run is no trial of the search


def test_importances_find_the_hyperparameter_that_matters_and_skip_small_searches(tmp_path):
    import math

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from study.analysis import conclusions
    from study.analysis.load import load

    refs, weak, strong, _ = _systems(50)
    study = _fake_study(tmp_path / "fake", {"scratch": weak, "full": strong}, refs)
    storage = f"sqlite:///{study / 'optuna.db'}"
    space = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "weight_decay": CategoricalDistribution([0.0, 0.1])}
    rng = random.Random(0)
    for regime, n in (("scratch", 10), ("full", 3)):
        s = optuna.create_study(study_name=regime, storage=storage, direction="maximize")
        for i in range(n):
            lr, wd = 10 ** rng.uniform(-4, -2), rng.choice([0.0, 0.1])
            bleu = 10 * (math.log10(lr) + 4) + rng.uniform(-0.1, 0.1)  # BLEU follows lr; weight decay is noise
            pruned = i % 2  # ASHA stopped half after epoch 1: their first-rung score still counts
            s.add_trial(optuna.trial.create_trial(
                params={"lr": lr, "weight_decay": wd}, distributions=space,
                state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
                value=None if pruned else bleu + 2, intermediate_values={1: bleu} if pruned else {1: bleu, 2: bleu + 2}))
    found = conclusions.importances(load(study))
    assert found["scratch"]["trials"] == 10 and found["scratch"]["epoch"] == 1
    assert found["scratch"]["lr"] > 0.8 > found["scratch"]["weight_decay"]
    assert found["full"].startswith("skipped: 3 trial(s)") and str(conclusions.MIN_IMPORTANCE_TRIALS) in found["full"]
