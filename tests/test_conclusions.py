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
