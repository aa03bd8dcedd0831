"""Conclusions with their uncertainty: multi-reference BLEU that the sacrebleu command line re-scores exactly,
paired bootstrap p-values that agree with `sacrebleu --paired-bs`, and report sentences that follow the
interval; then a tiny study with seeds whose spread reaches best.json and the analysis."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sacrebleu
from conftest import SMALL_FLAGS, SMALL_MODEL, write_pairs

from study.metrics.scoring import multi_reference_bleu, references_by_source, translation_scores
from study.metrics.significance import paired_bootstrap
from study.outputs.holdout import write_test_texts

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


def _variant(refs: list[str], keep: float, seed: int) -> list[str]:
    """A system's output on `refs`: each reference word kept with probability `keep`, else a random word."""
    rng = random.Random(seed)
    words = "le la chat chien maison est noir blanc il elle mange voit grand petit rouge vert".split()
    return [" ".join(w if rng.random() < keep else rng.choice(words) for w in r.split()) for r in refs]


DISTINCT = [f"source {i}" for i in range(300)]  # one row per source, for 300 rows


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fake_study(path: Path, systems: dict[str, list[str] | list[list[str]]], refs: list[str],
                sources: list[str] | None = None, best: dict[str, dict] | None = None) -> Path:
    """A finished study's files as the analysis reads them (study.json, each regime's best.json and test
    texts), without training anything. `systems`: a regime's one output, or its seed runs' outputs (the best
    trial's first, written as test.hyp.txt, then test.hyp.seed<N>.txt as test scoring writes them); `best`:
    fields added to a regime's best.json."""
    runs = {r: [h] if isinstance(h[0], str) else h for r, h in systems.items()}
    path.mkdir(parents=True)
    (path / "study.json").write_text(json.dumps({"name": path.name, "regimes": list(systems), "preset": "quick",
                                                 "config": {"model": "tiny", "data": "sample", "seed": 0, "data_seed": 0},
                                                 "budget": {"max_epochs": 1,
                                                            "seeds": max(len(h) for h in runs.values())}}))
    for regime, hyps in runs.items():
        (path / regime).mkdir()
        _write_lines(path / regime / "test.hyp.txt", hyps[0])
        for k, h in enumerate(hyps[1:], start=1):
            _write_lines(path / regime / f"test.hyp.seed{100 + k}.txt", h)
        _write_lines(path / regime / "test.ref.txt", refs)
        if sources is not None:
            _write_lines(path / regime / "test.src.txt", sources)
        bleus = [translation_scores(h, refs)["bleu"] for h in hyps]
        (path / regime / "best.json").write_text(json.dumps({
            "regime": regime, "trial_id": f"t_{regime}", "test_bleu": bleus[0],
            "test_bleu_mean": sum(bleus) / len(bleus), "test_bleu_sd": None, "test_bleu_n": len(bleus),
            "best_val_bleu": bleus[0], "trainable_params": 1, "config": {"model": "tiny"},
            "seeds": [{"seed": 0 if k == 0 else 100 + k, "test_bleu": b} for k, b in enumerate(bleus)],
            **(best or {}).get(regime, {})}))
    return path


def test_one_seed_and_one_row_per_source_is_sacrebleus_paired_bootstrap(tmp_path):
    from study.analysis import conclusions
    from study.analysis.load import load
    from study.metrics.significance import seeded_bootstrap

    refs, weak, strong, twin = _systems(300)
    systems = {"weak": weak, "strong": strong, "twin": twin}
    for name, lines in (("ref", refs), *systems.items()):
        _write_lines(tmp_path / f"{name}.txt", lines)
    sources = [f"source {i}" for i in range(300)]  # one row per source
    for low, high in (("weak", "strong"), ("weak", "twin")):  # a clear difference and one that is not
        cli = json.loads(sacrebleu_cli([tmp_path / "ref.txt"], [tmp_path / f"{low}.txt", tmp_path / f"{high}.txt"],
                                       "--paired-bs", "--paired-bs-n", "1000", "-f", "json"))
        ours = seeded_bootstrap(refs, [systems[high]], [systems[low]], sources=sources)
        assert ours["p_value"] == cli[1]["BLEU"]["p_value"], (low, high)
        assert ours["difference"] == pytest.approx(cli[1]["BLEU"]["score"] - cli[0]["BLEU"]["score"], abs=1e-12)
        assert ours["clusters"] == ours["rows"] == 300 and ours["n_seeds_a"] == ours["n_seeds_b"] == 1
    # ... and so does the study's pairwise.csv's secondary column, the search winners' sentences only; with one
    # seed per regime (no fresh seed run) the regimes are not tested at all.
    study = _fake_study(tmp_path / "fake", {"full": strong, "scratch": weak}, refs, sources=DISTINCT)
    pairs = conclusions.pairwise(load(study))
    cli = json.loads(sacrebleu_cli([study / "scratch" / "test.ref.txt"],
                                   [study / "scratch" / "test.hyp.txt", study / "full" / "test.hyp.txt"],
                                   "--paired-bs", "-f", "json"))
    row = pairs.iloc[0]
    assert row["p_best_models_sentences"] == cli[1]["BLEU"]["p_value"] < 0.01
    assert pd.isna(row["p"]) and row["verdict"] == conclusions.INCONCLUSIVE and row["family_size"] == 0
    assert "0 fresh seed run(s) of `full`" in row["reason"] and "0 fresh seed run(s) of `scratch`" in row["reason"]


def test_rows_that_share_a_source_are_resampled_together():
    from study.metrics.significance import seeded_bootstrap

    refs, weak, strong, _ = _systems(150)
    # Every source twice (a second reference each, one hypothesis per source as `evaluate` gives): 300 rows,
    # but only 150 independent draws; as 300 independent rows the interval would be about 1/sqrt(2) as wide.
    other = _variant(refs, 0.8, seed=9)
    rows = [r for pair in zip(refs, other) for r in pair]
    sources = [f"en {i}" for i in range(150) for _ in range(2)]
    twice = [h for h in strong for _ in range(2)], [h for h in weak for _ in range(2)]
    clustered = seeded_bootstrap(rows, [twice[0]], [twice[1]], sources=sources)
    alone = seeded_bootstrap(rows, [twice[0]], [twice[1]], sources=None)
    assert clustered["clusters"] == 150 and alone["clusters"] == 300
    assert clustered["difference"] == alone["difference"]
    width = {k: r["ci_high"] - r["ci_low"] for k, r in (("clustered", clustered), ("alone", alone))}
    assert width["clustered"] > 1.2 * width["alone"], width


def test_seed_t_test_is_welchs_t_with_the_sentence_variance_added():
    """Without sentence variance it is Welch's t-test (scipy's, where installed); V widens the interval and
    raises p; df never exceeds the seed runs' own; an untrained regime adds no seed variance; two-sided p."""
    import math

    from scipy import stats

    from study.metrics.significance import detectable_difference, seed_t_test

    a, b = [12.1, 14.0, 13.2], [10.3, 11.9, 9.4, 10.8]
    mean = lambda x: sum(x) / len(x)  # noqa: E731
    sd = lambda x: math.sqrt(sum((v - mean(x)) ** 2 for v in x) / (len(x) - 1))  # noqa: E731
    plain = seed_t_test(mean(a), sd(a), 3, mean(b), sd(b), 4, 0.0)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert plain["p_value"] == pytest.approx(welch.pvalue, rel=1e-9) and plain["t"] == pytest.approx(welch.statistic)
    assert plain["df"] == pytest.approx(welch.df) and plain["testable"]
    low, high = welch.confidence_interval(0.95)
    assert (plain["ci_low"], plain["ci_high"]) == pytest.approx((low, high), rel=1e-9)
    wider = seed_t_test(mean(a), sd(a), 3, mean(b), sd(b), 4, 0.5)
    assert wider["se"] == pytest.approx(math.sqrt(plain["se"] ** 2 + 0.5)) and wider["p_value"] > plain["p_value"]
    assert wider["df"] <= 2 + 3  # the seed runs' own degrees of freedom
    # two-sided: t = 2.776 at 4 df is p = 0.05, not 0.025
    edge = seed_t_test(2.7764451051977934, math.sqrt(5), 5, 0.0, None, 1, 0.0, fixed_b=True)  # se 1
    assert edge["df"] == 4 and edge["p_value"] == pytest.approx(0.05, abs=1e-9)
    # one run of a trained regime: no spread, no test
    assert not seed_t_test(5.0, None, 1, 3.0, 1.0, 3, 0.1)["testable"]
    # the smallest detectable difference: (t_{0.975} + t_{0.8}) se
    assert detectable_difference(1.0, 4) == pytest.approx(2.776445 + 0.940965, abs=1e-5)


def test_sentence_variance_is_the_paired_bootstraps_variance_of_the_seed_averaged_difference():
    import numpy as np
    import sacrebleu as sb

    from study.metrics.significance import _bootstrap_indices, _resampled_bleu, sentence_variance

    refs, weak, strong, twin = _systems(120)
    one = sentence_variance(refs, [strong], [weak], resamples=200)
    idxs = _bootstrap_indices(120, 200)  # sacrebleu's own resamples, as paired_bootstrap reads them
    bleu = sb.metrics.BLEU()
    direct = _resampled_bleu(bleu, strong, [refs], idxs) - _resampled_bleu(bleu, weak, [refs], idxs)
    assert one["sentence_variance"] == pytest.approx(float(np.var(direct, ddof=1)), rel=1e-6)
    assert one["runs_a"] == [pytest.approx(sb.corpus_bleu(strong, [refs]).score)]
    # the variance of the *average* over runs: two copies of one run average to that run
    assert sentence_variance(refs, [strong, strong], [weak], resamples=200)["sentence_variance"] == pytest.approx(
        one["sentence_variance"], rel=1e-6)
    averaged = sentence_variance(refs, [strong, twin], [weak], resamples=200)
    assert averaged["sentence_variance"] != pytest.approx(one["sentence_variance"], rel=1e-3)


def test_the_search_winner_is_beside_the_test_and_the_label_follows_the_files(tmp_path):
    """`full`'s search winner is far ahead, but its fresh seed runs are below `scratch`'s: the test (fresh runs
    only) puts `scratch` first, with a positive difference, and the winners' difference is reported beside it,
    negative; best.json's means (which say `full`) do not set the label."""
    from study.analysis import conclusions
    from study.analysis.load import load

    refs = _systems(300)[0]
    full = [_variant(refs, 0.9, seed=1), _variant(refs, 0.45, seed=2), _variant(refs, 0.46, seed=3)]
    scratch = [_variant(refs, 0.5, seed=4), _variant(refs, 0.55, seed=5), _variant(refs, 0.56, seed=6)]
    study = _fake_study(tmp_path / "fake", {"full": full, "scratch": scratch}, refs, sources=DISTINCT,
                        best={"full": {"test_bleu_mean": 99.0}})
    row = conclusions.pairwise(load(study)).iloc[0]
    assert (row["a"], row["b"], row["n_seeds_a"], row["n_seeds_b"]) == ("scratch", "full", 2, 2)
    fresh = [translation_scores(h, refs)["bleu"] for h in (*scratch[1:], *full[1:])]
    assert row["difference"] == pytest.approx((fresh[0] + fresh[1] - fresh[2] - fresh[3]) / 2) and row["difference"] > 0
    assert row["winner_bleu_b"] == pytest.approx(translation_scores(full[0], refs)["bleu"])
    assert row["best_models_difference"] < -10 and row["seeds_bleu_b"] == ";".join(f"{x:.2f}" for x in fresh[2:])


def test_a_missing_seed_file_is_counted_not_silently_dropped(tmp_path):
    from study.analysis import conclusions
    from study.analysis.load import load

    refs = _systems(300)[0]
    strong = [_variant(refs, 0.7, seed=s) for s in (1, 2, 5, 7)]
    weak = [_variant(refs, 0.45, seed=s) for s in (3, 4, 6, 8)]
    study = _fake_study(tmp_path / "fake", {"full": strong, "scratch": weak}, refs, sources=DISTINCT)
    assert conclusions.pairwise(load(study)).iloc[0]["verdict"] == conclusions.FINDING
    (study / "full" / "test.hyp.seed102.txt").unlink()
    row = conclusions.pairwise(load(study)).iloc[0]
    assert (row["a"], row["n_seeds_a"], row["seeds_missing_a"]) == ("full", 2, 1)
    assert row["verdict"] == conclusions.INCONCLUSIVE
    assert "best.json lists 1 scored seed run(s) of `full` whose test translations are missing" in row["reason"]


def test_diverged_seed_runs_block_a_finding_for_the_regime_they_flatter(tmp_path):
    """Diverged seed re-runs are never scored; best.json lists them. A diverged run of the higher regime makes
    the pair inconclusive (its survivors flatter it); of the lower regime, the finding stands, with a note."""
    from study.analysis import conclusions
    from study.analysis.load import load
    from study.analysis.report import markdown_table

    refs = _systems(300)[0]
    strong = [_variant(refs, 0.7, seed=s) for s in (1, 2, 5, 7)]
    weak = [_variant(refs, 0.45, seed=s) for s in (3, 4, 6, 8)]
    gone = {"seeds_diverged": [{"seed": 999, "epoch": 2, "trial_id": "x"}]}
    for higher, verdict in ((True, conclusions.INCONCLUSIVE), (False, conclusions.FINDING)):
        study = _fake_study(tmp_path / f"fake{higher}", {"full": strong, "scratch": weak}, refs, sources=DISTINCT,
                            best={"full" if higher else "scratch": gone})
        a = load(study)
        row = conclusions.pairwise(a).iloc[0]
        assert row["a"] == "full" and row["verdict"] == verdict, row["reason"]
        assert (row["seeds_diverged_a"], row["seeds_diverged_b"]) == ((1, 0) if higher else (0, 1))
        assert ("1 fresh seed run(s) of `full` diverged and are not scored" in row["reason"]) == higher
        assert ("1 fresh seed run(s) of `scratch` diverged" in row["reason"]) == (not higher)
        text = "\n".join(conclusions.section(a, markdown_table))
        assert "1 seed re-run(s) diverged (non-finite loss; seed(s) 999, at epoch(s) 2)" in text


def test_a_label_that_disagrees_with_its_difference_is_refused():
    from study.analysis.verdicts import decide
    from study.metrics.significance import seed_t_test

    test = seed_t_test(10.0, 1.0, 3, 12.0, 1.0, 3, 0.1)
    with pytest.raises(ValueError, match="higher mean first"):
        decide(test, p_adjusted=0.01, family=1, a="full", b="scratch")


def test_holm_adjusts_the_family_step_down():
    from study.metrics.significance import holm

    # sorted 0.01 (x3), 0.03 (x2), 0.04 (x1): 0.03, 0.06, 0.04 -> kept monotone: 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002]) and holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_regimes_whose_seed_runs_overlap_are_inconclusive_though_each_model_pair_is_significant(tmp_path):
    """`full`'s best trial beats `scratch`'s, and `scratch`'s second seed beats `full`'s: each one-model
    bootstrap says p < 0.01, but over seeds nothing is known; pairwise.csv and the report say so."""
    from study.analysis import conclusions
    from study.analysis.load import load
    from study.analysis.report import markdown_table
    from study.metrics.significance import paired_bootstrap

    refs = _systems(300)[0]
    full = [_variant(refs, 0.6, seed=0), _variant(refs, 0.7, seed=1), _variant(refs, 0.45, seed=2)]
    scratch = [_variant(refs, 0.55, seed=5), _variant(refs, 0.5, seed=3), _variant(refs, 0.66, seed=4)]
    for a, b in ((full[1], scratch[1]), (scratch[2], full[2])):
        assert paired_bootstrap(refs, b, a)["p_value"] < 0.01  # each pair of models, sentences alone
    study = _fake_study(tmp_path / "fake", {"full": full, "scratch": scratch}, refs, sources=DISTINCT)
    a = load(study)
    pairs = conclusions.pairwise(a)
    row = pairs.iloc[0]
    assert (row["n_seeds_a"], row["n_seeds_b"], row["family_size"]) == (2, 2, 1)
    assert row["p_best_models_sentences"] < 0.01
    assert row["verdict"] == conclusions.INCONCLUSIVE and "seeds disagree" in row["reason"]
    assert "not below 0.05" in row["reason"] and row["ci_low"] < 0 < row["ci_high"] and row["p"] > 0.05
    path = conclusions.write_pairwise(a, pairs)
    written = pd.read_csv(path)
    assert list(written.columns[:10]) == ["a", "b", "difference", "ci_low", "ci_high", "p", "p_adjusted",
                                          "n_seeds_a", "n_seeds_b", "verdict"]
    assert written["verdict"].tolist() == [conclusions.INCONCLUSIVE]
    text = "\n".join(conclusions.section(a, markdown_table, pairs))
    assert "a finding about" not in text and "| finding" not in text and "inconclusive at this budget: p = " in text


def test_report_calls_a_difference_a_finding_only_when_the_adjusted_test_passes(tmp_path):
    from study.analysis import conclusions
    from study.analysis.load import load
    from study.analysis.report import markdown_table

    refs = _systems(300)[0]
    strong = [_variant(refs, 0.7, seed=s) for s in (1, 2, 5)]
    weak = [_variant(refs, 0.45, seed=s) for s in (3, 4, 6)]
    twin = [[h if i % 40 else r for i, (h, r) in enumerate(zip(w, refs))] for w in weak]  # weak, a few made right
    study = _fake_study(tmp_path / "fake", {"full": strong, "decoder": twin, "scratch": weak}, refs,
                        sources=DISTINCT)
    a = load(study)
    pairs = conclusions.pairwise(a).set_index(["a", "b"])
    assert set(pairs.index) == {("full", "decoder"), ("full", "scratch"), ("decoder", "scratch")}
    assert (pairs["family_size"] == 3).all()
    # Holm: the adjusted p-values are at least the raw ones, the smallest one multiplied by the family's size
    assert (pairs["p_adjusted"] >= pairs["p"]).all()
    assert pairs["p_adjusted"].min() == pytest.approx(min(1.0, 3 * pairs["p"].min()))
    assert pairs.loc[("full", "scratch"), "verdict"] == conclusions.FINDING
    assert pairs.loc[("decoder", "scratch"), "verdict"] == conclusions.INCONCLUSIVE

    text = "\n".join(conclusions.section(a, markdown_table))
    assert "family of 3 pairwise comparison(s)" in text and "p (Holm, 3)" in text
    finding = next(line for line in text.splitlines() if line.startswith("- `full` − `scratch`"))
    assert "mean of `full`'s 2 fresh seed run(s) against `scratch`'s 2 fresh seed run(s)" in finding
    assert ("a finding about the configurations this search found, with the tiny upstream pretrained at --seed 0 "
            "and the test split drawn at data seed 0, over these seeds: the configuration found for `full` scores "
            "higher test BLEU than the one found for `scratch`") in finding
    assert "better translator" not in text
    not_found = next(line for line in text.splitlines() if line.startswith("- `decoder` − `scratch`"))
    assert conclusions.INCONCLUSIVE in not_found and "a finding" not in not_found
    claims = conclusions.original_claims(conclusions.pairwise(a))
    assert "not borne out here" in claims[0]  # decoder ≈ full: full is better here, a finding
    assert any("against `full`" in c and "`scratch` is worse here, a finding" in c for c in claims)
    assert any("against `decoder`" in c and "not shown worse here" in c for c in claims)
    assert "skipped: the study has no optuna.db" in text and not (study / "optuna.db").exists()
    # One seed per regime: however clear the difference between the two models, training's spread is unknown.
    single = _fake_study(tmp_path / "single", {"full": strong[0], "scratch": weak[0]}, refs)
    row = conclusions.pairwise(load(single)).iloc[0]
    assert row["p_best_models_sentences"] < 0.01 and row["verdict"] == conclusions.INCONCLUSIVE
    assert "0 fresh seed run(s) of `full`" in row["reason"]


@pytest.mark.slow
def test_seed_runs_and_test_scoring_run_like_trials_on_the_gpu_worker(tmp_path, monkeypatch):
    """A head without GPUs and a worker with one (Ray's fake resources: no CUDA, so torch runs on CPU): with
    --gpus-per-trial 1 the search, the seed re-run and the test scoring all run on the worker; best.json gives
    the spread over both seeds and names the node that scored; the trials table holds each seed's score."""
    import ray
    from ray.cluster_utils import Cluster

    from study.analysis.load import load
    from study.run import main as run_main
    from study.tuning.seeds import extra_seeds

    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, 400)
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
                         *SMALL_FLAGS, "--max-eval-pairs", "20", "--max-test-pairs", "30"])
    finally:
        ray.shutdown()
        cluster.shutdown()
        __import__("shutil").rmtree(temp_dir, ignore_errors=True)
    assert code == 0
    study = tmp_path / "results" / "placed"
    best = json.loads((study / "scratch" / "best.json").read_text())
    assert worker_id != head_id
    assert best["scored_node_id"] == worker_id and best["scored_device"] == "cpu"
    assert [s["seed"] for s in best["seeds"]] == [0, *extra_seeds(0, 2)]
    assert [s["scored_epoch"] for s in best["seeds"]] == [best["best_epoch"]] * 2
    assert all(s["node_id"] == worker_id for s in best["seeds"])
    bleus = [s["test_bleu"] for s in best["seeds"]]
    assert best["test_bleu_n"] == 2 and best["test_bleu_mean"] == pytest.approx(sum(bleus) / 2)
    assert best["test_bleu_sd"] == pytest.approx(abs(bleus[0] - bleus[1]) / 2 ** 0.5)
    assert best["test_bleu"] == bleus[0]  # the search's own run stays the ranked figure
    # a seed re-run that ignored its seed would be the best trial again, to the last digit
    assert best["seeds"][0]["test_loss"] != best["seeds"][1]["test_loss"]
    assert (study / "scratch" / f"test.hyp.seed{extra_seeds(0, 2)[0]}.txt").exists()
    assert (study / "scratch" / "test.src.txt").read_text().count("\n") == best["test_pairs"]
    # Scored, the seed re-run keeps no checkpoint: the search's best checkpoint is the study's only one.
    assert sorted(study.rglob("checkpoint_*")) == [Path(best["checkpoint"])]

    a = load(study)
    runs = a.trials.set_index("run")
    assert sorted(a.trials["run"]) == ["search", "seeds"] and int(runs.loc["seeds", "seed"]) == extra_seeds(0, 2)[0]
    assert runs.loc["seeds", "test_bleu"] == pytest.approx(bleus[1]) and runs.loc["search", "test_bleu"] == bleus[0]
    row = a.comparison.set_index("regime").loc["scratch"]
    assert row["test_bleu_n"] == 2 and row["trials"] == 1  # the seed re-run is no trial of the search


@pytest.mark.slow
def test_seed_reruns_train_as_long_as_the_selected_epoch_and_differ_by_seed(tmp_path):
    """Seed re-runs of a best trial whose selected epoch is 1 of a 3-epoch budget: each trains one epoch, on
    the budget's schedule (its lr after epoch 1 is not yet decayed to 0), and is checkpointed there; the two
    seeds train differently (a seed ignored would give the same loss); studies at nearby seeds share none."""
    import ray

    from study.config import Budget, Config
    from study.training.checkpoints import load_for_resume
    from study.training.pretraining import prepare_data_with_upstream
    from study.tuning.seeds import extra_seeds, run_seed_trials

    seeds = extra_seeds(0, 3)
    assert len(set(seeds)) == 2 and not set(seeds) & set(range(10)) and not set(seeds) & set(extra_seeds(1, 3))
    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, 300)
    config = Config(data=str(pairs), cache_dir=str(tmp_path / "cache"), model="tiny", regime="scratch", epochs=3,
                    **SMALL_MODEL, max_eval_pairs=20, device="cpu", batch_size=16, torch_threads=1)
    data = prepare_data_with_upstream(config, need_upstream=False)
    budget = Budget(num_samples=1, max_epochs=3, max_concurrent=2, cpus_per_trial=1, gpus_per_trial=0,
                    grace_period=None, reduction_factor=None, max_failures=0)
    ray.shutdown()  # an in-process study that ran before in this worker keeps its local Ray up
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        grid = run_seed_trials("scratch", config, budget, {"lr": 3e-3, "num_beams": 1}, seeds,
                               str(tmp_path / "tune"), data, epochs=1)
    finally:
        ray.shutdown()
    results = list(grid)
    assert sorted(r.config["seed"] for r in results) == sorted(seeds) and not any(r.error for r in results)
    for r in results:
        assert r.metrics_dataframe["epoch"].tolist() == [1] and r.metrics["lr"] > 0
        with r.checkpoint.as_directory() as directory:
            assert load_for_resume(directory)["epoch"] == 1
    assert results[0].metrics["train_loss"] != results[1].metrics["train_loss"]


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


def test_a_diverged_seed_rerun_is_listed_in_best_json_and_never_scored_at_another_epoch(tmp_path, monkeypatch):
    """Seed re-runs of a best trial selected at epoch 2: one finished there, one diverged at epoch 2 (its last
    checkpoint is epoch 1's), one diverged at epoch 1 (no checkpoint), one errored after epoch 1. Only the
    first is scored; the diverged two are best.json's `seeds_diverged`, the errored one its `seeds_failed`."""
    from types import SimpleNamespace

    from study.config import Config
    from study.outputs import holdout
    from study.tuning.best import BestTrial

    def result(seed, epoch, *, diverged=False, checkpoint=True, error=None):
        # Tune's Result: the last report's metrics; a checkpoint saved with every epoch that did not diverge
        saved = [f"ckpt-{seed}-{e}" for e in range(1, epoch + (not diverged))] if checkpoint else []
        history = pd.DataFrame({"epoch": range(1, epoch + 1), "diverged": [False] * (epoch - 1) + [diverged],
                                "val_bleu": [5.0] * (epoch - 1) + [0.0 if diverged else 5.0]})
        return SimpleNamespace(config={"lr": 1e-3, "seed": seed}, error=error, checkpoint=saved[-1] if saved else None,
                               metrics={**history.iloc[-1].to_dict(), "epoch": epoch, "trial_id": f"t{seed}"},
                               metrics_dataframe=history, best_checkpoints=saved)

    seeds = [result(11, 2), result(12, 2, diverged=True), result(13, 1, diverged=True, checkpoint=False),
             result(14, 1, error="RuntimeError: worker died")]
    history = pd.DataFrame({"epoch": [1, 2], "val_bleu": [3.0, 4.0], "time_total_s": [1.0, 2.0]})
    winner = SimpleNamespace(metrics={"trial_id": "t0", "epoch": 2, "val_bleu": 4.0}, metrics_dataframe=history,
                             error=None, config={"lr": 1e-3})
    checkpoint = SimpleNamespace(path="best-ckpt")
    monkeypatch.setattr(holdout, "best_trial", lambda *a: BestTrial(winner, {"lr": 1e-3}, 2, 4.0, checkpoint))
    scored_checkpoints = []

    def score(jobs, data, resources):
        scored_checkpoints.extend(c for _, c in jobs)
        return [{"metrics": {"test_bleu": 10.0 + k}, "hypotheses": ["a b", "c"], "references": ["a b", "c d"],
                 "node_id": "n", "node_ip": "ip", "device": "cpu", "seconds": 0.1} for k in range(len(jobs))]

    monkeypatch.setattr(holdout, "score_on_test", score)
    data = SimpleNamespace(test={"en": ["x", "y"]})
    row = holdout.score_best([winner], "scratch", Config(model="tiny", regime="scratch", epochs=3), data,
                                tmp_path, 1.0, ["lr"], seed_grid=seeds)
    assert scored_checkpoints == [checkpoint, "ckpt-11-2"]  # nothing scored at an epoch other than 2
    assert [(s["seed"], s["scored_epoch"]) for s in row["seeds"]] == [(0, 2), (11, 2)]
    assert [(s["seed"], s["epoch"]) for s in row["seeds_diverged"]] == [(12, 2), (13, 1)]
    assert [(s["seed"], s["epoch"]) for s in row["seeds_failed"]] == [(14, 1)]
    assert "worker died" in row["seeds_failed"][0]["reason"] and row["test_bleu_n"] == 2
    written = json.loads((tmp_path / "scratch" / "best.json").read_text())
    assert written["seeds_diverged"] == row["seeds_diverged"] and not (tmp_path / "scratch" / "test.hyp.seed12.txt").exists()
