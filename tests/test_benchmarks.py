"""benchmarks/: every script runs end to end at toy scale and writes its JSON; the original notebook's batches
really are padded to the corpus maximum with pad-id labels; the project's loop as rebuilt for timing is `fit`'s."""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

import pytest
import torch
from conftest import SHARED_PAIRS, SHARED_T5, SMALL_MODEL, write_pairs
from datasets import Dataset, DatasetDict

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    common,
    eval_throughput,
    loops,
    padding,
    pretraining_gain,
    search_efficiency,
    train_throughput,
)
from study.config import Config  # noqa: E402
from study.data import batching  # noqa


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "pairs.tsv"
    write_pairs(path, 300)
    return path


@pytest.fixture(scope="module")
def toy(pairs, tmp_path_factory) -> list[str]:
    """Flags of a toy run: the tiny model on 300 generated pairs, a private cache, one thread."""
    cache = tmp_path_factory.mktemp("bench-cache")
    return ["--data", str(pairs), "--model", "tiny", "--cache-dir", str(cache), "--threads", "1"]


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------- smoke: each script


def test_train_throughput_runs_and_writes_json(toy, tmp_path, capsys):
    out = tmp_path / "train.json"
    argv = [*toy, "--steps", "3", "--original-steps", "2", "--pool-pairs", "40", "--batch-size", "8", "--repeats", "1",
            "--matmul-size", "256", "--out", str(out), "--profile", "--profile-steps", "2", "--profile-rows", "5"]
    assert train_throughput.main(argv) == 0
    record = read(out)
    assert {"benchmark", "settings", "run", "ways", "skipped", "ratios", "targets", "profile", "c_over_a",
            "c_over_b", "share_of_peak", "matmul_peak_flops_per_s"} <= set(record)
    expected_trainer = train_throughput.trainer_unavailable() is None
    assert ("trainer" in record["ways"]) == expected_trainer and ("trainer" in record["skipped"]) != expected_trainer
    assert "trainer_bf16" in record["ways"] or "trainer_bf16" in record["skipped"]
    weights, peaks = record["settings"]["flop_weights"], record["matmul_peak_flops_per_s"]
    tokens = {}
    for name, way in record["ways"].items():
        assert len(way["repeats"]) == 1
        run = way["repeats"][0]
        expected_steps = 2 if name == "original" else 3
        assert run["steps"] == expected_steps and run["pairs"] == 8 * expected_steps, name
        # The rates are what was counted over what was timed (one repeat: its own figures, not a median).
        assert way["pairs_per_s"] == pytest.approx(run["pairs"] / run["seconds"]), name
        assert way["tokens_per_s"] == pytest.approx(run["tokens"] / run["seconds"]), name
        # 6 x parameters x tokens, by hand: encoder blocks per real source token, decoder + head per target token
        flops = 6 * (weights["encoder"] * run["source_tokens"] + weights["decoder_and_head"] * run["tokens"])
        assert way["useful_flops_per_s"] == pytest.approx(flops / run["seconds"]), name
        assert way["share_of_peak"] == pytest.approx(way["useful_flops_per_s"] / peaks[way["precision"]]), name
        assert way["computed_flops_per_s"] > way["useful_flops_per_s"], name  # padding is computed too
        tokens[name] = run["tokens"]
    assert all(n > 8 for n in tokens.values()), tokens  # several real target tokens a pair
    ways = record["ways"]
    for unit in ("pairs_per_s", "tokens_per_s"):
        assert record["ratios"]["project_vs_original"][unit] == pytest.approx(
            ways["project"][unit] / ways["original"][unit])
    assert record["c_over_a"] == record["ratios"]["project_vs_original"]["tokens_per_s"]
    if expected_trainer:  # c/b is against the faster of the Trainer's settings
        trainers = [w for w in ("trainer", "trainer_bf16") if w in ways]
        best = max(ways[w]["tokens_per_s"] for w in trainers)
        assert record["c_over_b"] == pytest.approx(ways["project"]["tokens_per_s"] / best)
    assert record["settings"]["pool_pairs"] == 40
    # (a) computes every row at the corpus maximum: more positions per step than (c)'s own-length batches.
    assert record["ways"]["original"]["positions_per_step"] >= record["ways"]["project"]["positions_per_step"]
    assert record["ways"]["original"]["padding"] > record["ways"]["project"]["padding"]
    assert "aten::" in record["profile"]["table"] and record["profile"]["phase_ms_per_step"]["step"] > 0
    printed = capsys.readouterr().out
    assert "c/a (against original)" in printed and "(a) original notebook loop" in printed


def test_train_throughput_decoder_regime_counts_a_forward_only_encoder(toy, tmp_path):
    """`--regime decoder`: (c) trains the decoder only; its FLOPs count the frozen encoder forward only."""
    out = tmp_path / "train.json"
    argv = [*toy, "--steps", "2", "--original-steps", "1", "--pool-pairs", "24", "--batch-size", "8", "--repeats", "1",
            "--matmul-size", "128", "--ways", "project", "--regime", "decoder", "--out", str(out)]
    assert train_throughput.main(argv) == 0
    record = read(out)
    s, run = record["settings"], record["ways"]["project"]["repeats"][0]
    weights = s["flop_weights"]
    assert not weights["encoder_trains"] and s["trainable_params"] < s["total_params"]
    flops = 2 * weights["encoder"] * run["source_tokens"] + 6 * weights["decoder_and_head"] * run["tokens"]
    assert record["ways"]["project"]["useful_flops_per_s"] == pytest.approx(flops / run["seconds"])


def test_eval_throughput_runs_and_writes_json(toy, tmp_path):
    out = tmp_path / "eval.json"
    argv = [*toy, "--pairs", "8", "--batch-size", "4", "--beams", "1", "2", "--repeats", "1",
            "--train-steps", "2", "--train-batch-size", "8", "--out", str(out)]
    assert eval_throughput.main(argv) == 0
    record = read(out)
    assert {"benchmark", "settings", "run", "results"} <= set(record)
    assert [(r["model"], r["num_beams"]) for r in record["results"]] == [
        ("random init", 1), ("random init", 2), ("trained 2 steps", 1), ("trained 2 steps", 2)]
    for r in record["results"]:
        for way in ("original", "project"):  # sentences translated over the seconds timed
            assert r[way]["sentences_per_s"] == pytest.approx(8 / r[way]["seconds"][0]), way
        assert r["ratio"] == pytest.approx(r["project"]["sentences_per_s"] / r["original"]["sentences_per_s"])
        assert 0 <= r["no_eos_fraction_original"] <= 1
        # the original's limit is the padded label length, the corpus's longest target
        assert r["original"]["new_token_limit_per_batch"] == record["settings"]["original_max_length"] - 1


def test_pretraining_gain_compares_regimes_and_shows_the_last_epoch(toy, tmp_path, capsys):
    out = tmp_path / "gain.json"
    argv = [*toy, "--regimes", "scratch", "full", "--epochs", "2", "--pretrain-steps", "5", "--max-eval-pairs",
            "20", "--lr", "3e-3", "--show", "2", "--out", str(out)]
    assert pretraining_gain.main(argv) == 0
    record = read(out)
    assert list(record["curves"]) == ["scratch", "full"] and Path(record["upstream"]).is_dir()
    for regime, curve in record["curves"].items():
        assert [row["epoch"] for row in curve] == [1, 2], regime
        seen = record["last_epoch"][regime]
        # translated with the last epoch's weights: its chrF is the last epoch's, not the first's
        assert curve[0]["val_chrf"] != curve[-1]["val_chrf"], regime
        assert seen["chrf"] == pytest.approx(curve[-1]["val_chrf"]), regime
        assert seen["bleu"] == pytest.approx(curve[-1]["val_bleu"]), regime
        assert all(0 <= seen[f"bleu_p{n}"] <= 100 for n in (1, 2, 3, 4)) and 0 < seen["brevity_penalty"] <= 1
        assert len(seen["samples"]) == 2 and all(s["source"] and s["reference"] for s in seen["samples"])
    printed = capsys.readouterr().out
    assert "full - scratch BLEU" in printed and printed.count("  OUT ") == 4


def test_padding_script_runs_as_a_file(toy, tmp_path, monkeypatch, capsys):
    # `python benchmarks/padding.py ...`, in this process (a new interpreter would spend seconds importing torch)
    out = tmp_path / "padding.json"
    monkeypatch.setattr(sys, "argv", ["padding.py", *toy, "--batch-size", "16", "--out", str(out)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(ROOT / "benchmarks" / "padding.py"), run_name="__main__")
    assert exit_.value.code == 0
    assert "this project: make_loader" in capsys.readouterr().out
    record = read(out)
    p = record["padding"]
    assert set(p) == {"original", "split_max", "random", "hf_grouped", "project"}
    # padding to the corpus max >= to the split max >= to each batch's own longest row
    assert p["original"]["padding"] >= p["split_max"]["padding"] >= p["project"]["padding"] >= 0
    assert p["project"]["positions_per_real_token"] >= 1


def test_search_efficiency_small_budget_with_fake_studies(tmp_path):
    """The small-budget mode (`--seeds 2 --num-samples 4 --max-epochs 2`) minus Ray: one study per arm and
    seed with the arm's flags, one JSON record per arm and seed, mean ± sd per arm, reuse of finished studies."""
    epochs = {"tpe_asha": [2, 1, 1, 2], "tpe": [2, 2, 2, 2], "random_asha": [2, 1, 2, 1], "random": [2, 2, 2, 2]}
    bleu = {("tpe_asha", 0): 10.0, ("tpe_asha", 1): 12.0, ("random", 0): 9.0, ("random", 1): 11.0}
    commands = []

    def fake_runner(cmd, log):
        commands.append(cmd)
        name = cmd[cmd.index("--name") + 1]
        arm, seed = name.split("-", 1)[1].rsplit("-s", 1)
        best = bleu.get((arm, int(seed)), 8.0)
        study = Path(cmd[cmd.index("--results") + 1]) / name / "scratch"
        for i, n in enumerate(epochs[arm]):
            trial = study / f"trial_{i:05d}"
            trial.mkdir(parents=True)
            lines = [{"epoch": e, "val_bleu": best * e / 2 - i, "time_total_s": 3.0 * e,
                      "config": {"lr": 1e-3, "batch_size": 32, "num_beams": 1}} for e in range(1, n + 1)]
            (trial / "result.json").write_text("".join(json.dumps(x) + "\n" for x in lines))
        (study / "best.json").write_text(json.dumps({"best_val_bleu": best, "test_bleu": best - 1,
                                                     "search_wall_s": 1.0, "pruned": epochs[arm].count(1)}))
        log.write_text("ok\n")
        return 0

    argv = ["--seeds", "2", "--num-samples", "4", "--max-epochs", "2", "--results", str(tmp_path / "studies"),
            "--name", "t", "--out", str(tmp_path / "search.json"), "--data", "pairs.tsv", "--tiny-d-model", "64"]
    assert search_efficiency.main(argv, runner=fake_runner) == 0
    assert len(commands) == 8
    for cmd in commands:  # same budget and data; each arm's own sampler and scheduler; unknown flags passed on
        name = cmd[cmd.index("--name") + 1]
        arm, seed = name.split("-", 1)[1].rsplit("-s", 1)
        assert cmd[1:3] == ["-m", "study.run"] and cmd[cmd.index("--seed") + 1] == seed
        assert cmd[cmd.index("--num-samples") + 1] == "4" and cmd[cmd.index("--max-epochs") + 1] == "2"
        assert cmd[cmd.index("--searcher") + 1] == ("tpe" if arm.startswith("tpe") else "random")
        assert cmd[cmd.index("--scheduler") + 1] == ("asha" if arm.endswith("asha") else "none")
        assert cmd[-2:] == ["--tiny-d-model", "64"] and "--no-analysis" in cmd and "--data" in cmd
    record = read(tmp_path / "search.json")
    assert sorted((r["arm"], r["seed"]) for r in record["records"]) == sorted(
        (arm, seed) for arm in search_efficiency.ARMS for seed in (0, 1))
    arms = record["arms"]
    assert arms["tpe_asha"]["best_val_bleu"]["mean"] == pytest.approx(11.0)
    assert arms["tpe_asha"]["best_val_bleu"]["sd"] == pytest.approx(2 ** 0.5)  # sample sd of 10 and 12
    assert arms["tpe_asha"]["test_bleu"]["mean"] == pytest.approx(10.0)
    assert arms["tpe_asha"]["epochs"]["mean"] == 6 and arms["random"]["epochs"]["mean"] == 8
    assert arms["random"]["trial_seconds"]["mean"] == pytest.approx(24.0) and arms["random"]["epochs"]["sd"] == 0
    c = record["comparison"]
    assert c["bleu_ratio"] == pytest.approx(11.0 / 10.0) and c["epoch_ratio"] == pytest.approx(6 / 8)
    assert c["targets"]["met"] is False  # 75 % of the epochs is more than half

    commands.clear()  # a rerun under the same name reuses the finished studies
    assert search_efficiency.main(argv, runner=fake_runner) == 0
    assert commands == []
    assert search_efficiency.main(argv + ["--arms", "tpe,nope"], runner=fake_runner) == 2  # one clear error


def test_bad_config_directory_is_one_clear_error(tmp_path, capsys):
    assert train_throughput.main(["--config", str(tmp_path), "--steps", "1"]) == 2
    assert "no config.json" in capsys.readouterr().err


# ------------------------------------------------------------------ the original notebook's defining flaw


def _tokenized(tokenizer) -> tuple[DatasetDict, Dataset]:
    """Short training pairs, and a test split holding the corpus's longest sentence."""
    en = ["A cat.", "The small dog sees a red car today.", "I am here.", "We eat.", "She reads a very old book.",
          "He is happy.", "You have a friend.", "They like the blue house."]
    fr = ["Un chat.", "Le petit chien voit une voiture rouge aujourd'hui.", "Je suis ici.", "Nous mangeons.",
          "Elle lit un très vieux livre.", "Il est heureux.", "Tu as un ami.", "Ils aiment la maison bleue."]
    long_en = "The old teacher and the happy child will quickly find the small green book under the tree near the river."
    long_fr = "Le vieux professeur et l'enfant heureux trouveront vite le petit livre vert sous l'arbre près de la rivière."
    splits = DatasetDict({"train": Dataset.from_dict({"en": en, "fr": fr}),
                          "validation": Dataset.from_dict({"en": ["Hello."], "fr": ["Bonjour."]}),
                          "test": Dataset.from_dict({"en": [long_en], "fr": [long_fr]})})
    prefix = Config().prefix
    train = Dataset.from_dict({
        "input_ids": tokenizer([prefix + s for s in en])["input_ids"],
        "labels": tokenizer(text_target=fr)["input_ids"]})
    return splits, train


def test_original_batches_pad_to_the_corpus_max_with_pad_id_labels(spm_tokenizer):
    splits, train = _tokenized(spm_tokenizer)
    source_max, target_max = common.corpus_max_lengths(splits, spm_tokenizer, Config().prefix)
    sources, targets = list(train["input_ids"]), list(train["labels"])
    # The corpus max comes from the long test sentence, not from the training rows being batched.
    assert source_max > max(map(len, sources)) and target_max > max(map(len, targets))
    pad = spm_tokenizer.pad_token_id
    assert pad == 0
    tensors = loops.original_tensors(sources, targets, source_max, target_max, pad)
    original = list(loops.original_batches(tensors, 4, seed=0))
    project = list(batching.make_loader(train, spm_tokenizer, 4, shuffle=True, seed=0))
    assert len(original) == len(project) == 2
    for batch in original:
        # every batch at the corpus maximum, whatever its own rows' lengths
        assert batch["input_ids"].shape == (4, source_max) and batch["labels"].shape == (4, target_max)
        assert (batch["labels"] == -100).sum() == 0 and (batch["labels"] == pad).sum() > 0
        # so the loss is averaged over every label position, padding included
        assert (batch["labels"] != -100).sum() == batch["labels"].numel()
    for batch in project:
        longest = int(batch["attention_mask"].sum(1).max())
        assert batch["input_ids"].shape[1] == longest < source_max
        assert batch["labels"].shape[1] < target_max
        assert (batch["labels"] == pad).sum() == 0 and (batch["labels"] == -100).sum() > 0
    # Row by row, the same real tokens: (a) pads labels with 0 exactly where (c) has -100.
    by_source = {tuple(row[m.bool()].tolist()): lab for b in project
                 for row, m, lab in zip(b["input_ids"], b["attention_mask"], b["labels"])}
    for b in original:
        for row, mask, labels in zip(b["input_ids"], b["attention_mask"], b["labels"]):
            theirs = by_source[tuple(row[mask.bool()].tolist())]
            n = int((theirs != -100).sum())
            assert torch.equal(labels[:n], theirs[:n]) and (labels[n:] == pad).all()
            assert (theirs[n:] == -100).all()


def test_original_padding_costs_real_loss_positions(spm_tokenizer):
    """(a)'s tensors, as the original notebook built them: T5's loss over them is the mean over *every* label
    position, padding included (computed here by hand), not over the real target tokens alone."""
    import torch.nn.functional as F
    from transformers import T5Config, T5ForConditionalGeneration

    _, train = _tokenized(spm_tokenizer)
    sources, targets = list(train["input_ids"])[:2], list(train["labels"])[:2]
    tensors = loops.original_tensors(sources, targets, 40, 40, 0)
    labels = tensors["labels"]
    real = torch.zeros_like(labels, dtype=torch.bool)
    for row, target in enumerate(targets):
        real[row, :len(target)] = True
    assert (labels[real] != 0).all() and (labels[~real] == 0).all() and (~real).sum() > real.sum()
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(vocab_size=len(spm_tokenizer), d_model=32, d_kv=8, d_ff=64,
                                                num_layers=1, num_heads=4, decoder_start_token_id=0)).eval()
    with torch.no_grad():
        out = model(**tensors)
        per_position = F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), reduction="none").view_as(labels)
    assert out.loss == pytest.approx(float(per_position.mean()), rel=1e-5)  # every position, pad included
    assert out.loss != pytest.approx(float(per_position[real].mean()), rel=1e-3)  # not the real tokens' mean


# ---------------------------------------------------------------- (c) as timed is fit's training, exactly


def test_project_loop_reproduces_fit_training_loss(toy, tmp_path):
    from study.data.prepared import PreparedData, prepare_data
    from study.model.regimes import build_model
    from study.training.loop import fit

    cache = toy[toy.index("--cache-dir") + 1]
    config = Config(data=toy[1], model="tiny", regime="scratch", cache_dir=cache, batch_size=8, epochs=1,
                    tiny_d_model=32, tiny_layers=1, tiny_heads=2, tiny_d_ff=64, max_train_pairs=40, max_eval_pairs=2,
                    eval_batch_size=2, max_target_tokens=24, torch_threads=1, device="cpu")  # as ProjectLoop below
    prepared = prepare_data(config)
    data = PreparedData(prepared.tokenizer, prepared.train, prepared.validation, prepared.validation)
    reported = []
    fit(config, data, lambda metrics, save: reported.append(metrics))
    steps = len(batching.make_loader(data.train, data.tokenizer, config.batch_size, shuffle=True, seed=config.seed))

    model, _ = build_model(config, data.tokenizer)
    loop = loops.ProjectLoop(model, data.train, data.tokenizer, config, torch.device("cpu"), total_steps=steps)
    stats = [loop.step(batch) for batch in loop.batches(epoch=1)]
    loop.read()
    assert len(stats) == steps and sum(s.pairs for s in stats) == len(data.train)
    assert loop.loss_sum / loop.tokens == pytest.approx(reported[-1]["train_loss"], rel=1e-6)


# ------------------------------------------------------------------------------------ with ../shared


@pytest.mark.skipif(not (SHARED_T5 / "config.json").exists() or not SHARED_PAIRS.exists(),
                    reason="../shared/t5-small or ../shared/data/eng-fra.tsv not present")
def test_padding_on_real_pairs_with_t5_small_tokenizer(tmp_path):
    lines = SHARED_PAIRS.read_text(encoding="utf-8").splitlines()
    subset = tmp_path / "real.tsv"
    subset.write_text("\n".join(lines[::len(lines) // 1500 or 1]) + "\n", encoding="utf-8")  # short to long
    out = tmp_path / "padding.json"
    assert padding.main(["--data", str(subset), "--config", str(SHARED_T5), "--cache-dir", str(tmp_path / "cache"),
                         "--threads", "1", "--out", str(out)]) == 0
    p = read(out)["padding"]
    assert p["project"]["padding"] < 0.5 * p["original"]["padding"]


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BENCH_SLOW"), reason="starts Ray 8 times (minutes); set BENCH_SLOW=1")
def test_search_efficiency_real_studies(pairs, tmp_path):
    argv = ["--seeds", "2", "--num-samples", "4", "--max-epochs", "2", "--max-train-pairs", "100", "--data",
            str(pairs), "--results", str(tmp_path / "studies"), "--name", "toy", "--out", str(tmp_path / "search.json"),
            "--cache-dir", str(tmp_path / "cache"), "--tiny-d-model", "64", "--tiny-layers", "2", "--tiny-d-ff", "128",
            "--tiny-vocab-size", "500", "--max-eval-pairs", "20"]
    assert search_efficiency.main(argv) == 0
    records = read(tmp_path / "search.json")["records"]
    assert len(records) == 8 and all(r["trials"] == 4 for r in records)
    for r in records:
        assert 4 <= r["epochs"] <= 8 and (r["epochs"] == 8 or r["arm"].endswith("asha")), r


# ------------------------------------------------------------------- issue 30: calibration and consistency


def _runs(refs: list[str], keeps: list[float]) -> list[list[str]]:
    """One system output per `keeps` entry: each reference word kept with that probability (seeded)."""
    import random

    words = "le la chat chien maison est noir blanc il elle mange voit grand petit rouge vert".split()
    out = []
    for k, keep in enumerate(keeps):
        rng = random.Random(k)
        out.append([" ".join(w if rng.random() < keep else rng.choice(words) for w in r.split()) for r in refs])
    return out


def test_calibration_covers_the_seed_spread_the_sentence_only_interval_misses(tmp_path, capsys):
    """Runs of one configuration whose seeds differ a lot (word-keep rates 0.40 to 0.70): the intervals over 3 and
    5 seeds cover the other seeds' difference far more often than the one-model sentence interval; the study's
    t-test calls fewer false findings between two groups of the same configuration than the bootstrap before it,
    and far fewer than the sentence-only test. Saved runs are re-analysed by --from-runs without training."""
    import random

    from benchmarks import calibration

    rng = random.Random(0)
    refs = [" ".join(rng.choice("le la chat chien maison est noir blanc".split()) for _ in range(rng.randint(5, 10)))
            for _ in range(200)]
    runs = _runs(refs, [0.55, 0.40, 0.70, 0.45, 0.65, 0.50, 0.60, 0.42, 0.68, 0.57, 0.48])
    sources = [f"s{i}" for i in range(200)]
    figures = calibration.calibrate(runs, refs, sources, draws=12, resamples=100)
    assert figures["runs"] == 11 and figures["groups"] == [3, 5] and set(figures["by_group"]) == {"3", "5"}
    for g in ("3", "5"):
        cover, false = figures["by_group"][g]["coverage"], figures["by_group"][g]["false_findings"]
        assert cover["t_test"] >= cover["seeded_bootstrap"] >= cover["sentences"] + 0.3, figures
        assert false["t_test"] <= false["seeded_bootstrap"] and false["sentences"] >= false["t_test"] + 0.3, figures
        widths = figures["by_group"][g]["mean_width"]
        assert widths["t_test"] > widths["seeded_bootstrap"] > 1.5 * widths["sentences"]
    with pytest.raises(calibration.StudyError, match="at least 7 runs"):
        calibration.calibrate(runs[:6], refs, None, draws=1, resamples=10)

    saved = calibration.save_runs(tmp_path / "runs", runs[:7], refs, sources, {"config": {"regime": "scratch",
                                  "lr": 3e-3, "batch_size": 16, "epochs": 3, "data": "d", "model": "tiny"},
                                  "epochs_trained": 3})
    out = tmp_path / "calibration.json"
    assert calibration.main(["--from-runs", str(saved), "--draws", "5", "--resamples", "50", "--out", str(out)]) == 0
    record = read(out)
    assert record["groups"] == [3] and record["runs_dir"] == str(saved) and len(record["bleu"]) == 7
    assert "t-test over fresh seeds (the study's), 3 run(s)" in capsys.readouterr().out
    (saved / "hyp.6.txt").unlink()
    assert calibration.main(["--from-runs", str(saved), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no complete saved calibration runs" in err[0]


@pytest.mark.slow
def test_calibration_trains_a_studys_best_configuration_to_its_selected_epoch(pairs, tmp_path, capsys):
    from benchmarks import calibration

    config = Config(data=str(pairs), model="tiny", regime="scratch", epochs=2, lr=3e-3, batch_size=16,
                    max_eval_pairs=20, **SMALL_MODEL, cache_dir=str(tmp_path / "cache"), device="cpu")
    (tmp_path / "study" / "scratch").mkdir(parents=True)
    (tmp_path / "study" / "scratch" / "best.json").write_text(json.dumps({"config": config.to_dict(), "best_epoch": 1}))
    out = tmp_path / "calibration.json"
    assert calibration.main(["--from-study", str(tmp_path / "study"), "--regime", "scratch", "--seeds", "7",
                             "--draws", "10", "--resamples", "100", "--out", str(out),
                             "--save-runs", str(tmp_path / "runs")]) == 0
    record = read(out)
    # trained as the study's seed re-runs: stopped at the best trial's epoch 1, on a 2-epoch schedule
    assert record["epochs_trained"] == 1 and record["last_epoch_of_each_run"] == [1] * 7
    assert record["config"]["epochs"] == 2 and len(set(record["bleu"])) > 1  # the seeds train differently
    figures = record["by_group"]["3"]
    assert 0 <= figures["coverage"]["t_test"] <= 1 and 0 <= figures["false_findings"]["seeded_bootstrap"] <= 1
    assert "covers the other seeds' A − B" in capsys.readouterr().out
    assert len(list(Path(record["runs_dir"]).glob("hyp.*.txt"))) == 7  # saved for --from-runs


def _pairwise(folder: Path, rows: list[tuple[str, str, str, float, float]]) -> Path:
    """A study folder holding only pairwise.csv: (a, b, verdict, sentence-only p, best models' difference)."""
    folder.mkdir(parents=True)
    import pandas as pd

    pd.DataFrame([{"a": a, "b": b, "verdict": v, "p_best_models_sentences": p, "best_models_difference": d}
                  for a, b, v, p, d in rows]).to_csv(folder / "pairwise.csv", index=False)
    return folder


def test_verdict_consistency_counts_reversed_and_inconclusive_findings(tmp_path, capsys):
    from benchmarks import verdict_consistency as vc

    f, i = "a finding", "inconclusive at this budget"
    runs = [_pairwise(tmp_path / "s0", [("full", "scratch", f, 0.001, 2.0), ("decoder", "full", i, 0.001, 1.0)]),
            _pairwise(tmp_path / "s1", [("scratch", "full", f, 0.001, 1.5), ("decoder", "full", i, 0.001, 1.0)]),
            _pairwise(tmp_path / "s2", [("full", "scratch", i, 0.2, 0.3)])]
    out = tmp_path / "consistency.json"
    assert vc.main([*map(str, runs), "--out", str(out)]) == 0
    seeded, sentences = (read(out)["results"][k] for k in ("seeded", "sentences"))
    # s0's finding: reversed in s1, inconclusive in s2; s1's: reversed in s0, inconclusive in s2
    assert seeded["findings"] == 2 and seeded["occurrences"] == 4
    assert (seeded["reversed"], seeded["inconclusive"], seeded["confirmed"], seeded["missing"]) == (2, 2, 0, 0)
    assert seeded["rates"]["reversed"] == 0.5 and seeded["goal_met"] is False
    # sentence-only: decoder > full in s0 and s1 (confirmed both ways, missing in s2), full vs scratch as above
    assert sentences["findings"] == 4 and sentences["confirmed"] == 2 and sentences["missing"] == 2
    assert sentences["reversed"] == 2 and sentences["inconclusive"] == 2
    assert seeded["pairs"]["full vs scratch"] == {str(runs[0]): "full better", str(runs[1]): "scratch better",
                                                  str(runs[2]): "inconclusive"}
    assert "reversed ≤ 5%" in capsys.readouterr().out
    (tmp_path / "bare").mkdir()
    assert vc.main([str(runs[0]), str(tmp_path / "bare"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no pairwise.csv" in err[0] and "python -m study.analyze" in err[0]


def test_slot_timeline_finds_the_stretches_a_slot_was_free(tmp_path, capsys):
    """Two trials' epochs on 2 slots: A runs 0-10 and 10-20, B 5-10 and 15-25 (Tune's timestamp is an epoch's
    end, time_this_iter_s its length): 35 slot-s busy over 25 s, 15 free, in three 5-s stretches."""
    from benchmarks import slot_timeline as st

    def trial(path: Path, ends_and_lengths: list[tuple[int, float]]) -> None:
        path.mkdir(parents=True)
        rows = [{"timestamp": 1_000 + end, "time_this_iter_s": length, "epoch": k + 1}
                for k, (end, length) in enumerate(ends_and_lengths)]
        (path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    trial(tmp_path / "study" / "scratch" / "trial_1_a", [(10, 10.0), (20, 10.0)])
    trial(tmp_path / "study" / "scratch" / "seeds" / "trial_0_b", [(10, 5.0), (25, 10.0)])
    out = tmp_path / "timeline.json"
    assert st.main([str(tmp_path / "study"), "--slots", "2", "--out", str(out)]) == 0
    record = read(out)
    assert record["span_s"] == 25 and record["epoch_seconds"] == 35 and record["free_slot_seconds"] == 15
    assert [(s["start"], s["end"], s["free_slot_seconds"]) for s in record["stretches"]] == [(0, 5, 5), (10, 15, 5),
                                                                                              (20, 25, 5)]
    assert record["stretches"][1]["running"] == ["scratch"] and record["stretches"][2]["running"] == ["scratch/seeds"]
    assert [r["experiment"] for r in record["experiments"]] == ["scratch", "scratch/seeds"]
    assert "15 slot-s free" in capsys.readouterr().out
    assert st.main([str(tmp_path), "--gap", "-1", "--out", str(out)]) == 2
    (tmp_path / "empty").mkdir()
    assert st.main([str(tmp_path / "empty"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "holds no trial results" in err[1]
