"""The trial: honest loss, exact freezing rules, exact resume, sacrebleu-equal BLEU, divergence, the CLI."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
import torch
from conftest import SMALL_FLAGS, SMALL_MODEL, write_pairs

from study.config import Config
from study.data.prepared import PreparedData, prepare_data
from study.metrics.generation import prefix_length, score_split, token_nll
from study.metrics.scoring import translation_scores
from study.model.regimes import REGIMES, parameter_counts
from study.model.weights import random_model
from study.training.loop import fit
from study.trial import main as trial_main
from study.trial import run_single

SMALL = dict(**SMALL_MODEL, max_eval_pairs=40, eval_batch_size=32, batch_size=16, epochs=2, lr=3e-3, torch_threads=1,
             device="cpu")  # the figures compared below are CPU float32's, on a GPU machine too


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Config:
    root = tmp_path_factory.mktemp("trial")
    return Config(data=str(write_pairs(root / "pairs.tsv", 300)), cache_dir=str(root / "cache"), **SMALL)


@pytest.fixture(scope="module")
def small_data(small_config) -> PreparedData:
    return prepare_data(small_config)


def test_tiny_tokenizer_gives_the_task_prefix_one_token(small_config, small_data, tmp_path):
    """The corpus never contains the prefix: spelled by the corpus's pieces it was 22 tokens, two of them
    <unk>, longer than the sentence. It must be a single known token, before and after a save/load."""
    from transformers import AutoTokenizer

    tok = small_data.tokenizer
    source = small_data.train[0]["input_ids"]
    assert tok.convert_ids_to_tokens(source[0]) == small_config.prefix.strip()
    assert tok.unk_token_id not in source
    assert tok.decode(source, skip_special_tokens=True) == small_config.prefix + small_data.train[0]["en"]
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)(small_config.prefix + "Hello.").input_ids[0] == source[0]
    assert prefix_length(tok, small_config.prefix) == 1


def test_tiny_tokenizer_keeps_frequent_words_whole(tmp_path):
    """SentencePiece seeds its pieces from substrings shared by two distinct words; without `seed_words`,
    words of the bundled grammar that are part of no other word ("dans", "did", "not") were split into
    meaningless pieces ("▁d an s"), 10.3 tokens a sentence instead of 8."""
    from study.data.sample.corpus import generate_pairs
    from study.data.tokenizer import train_tiny_tokenizer

    pairs = generate_pairs(3000, seed=0)
    en, fr = [p[0] for p in pairs], [p[1] for p in pairs]
    tok = train_tiny_tokenizer(en, fr, Config(model="tiny", cache_dir=str(tmp_path)))
    for word in ("did", "not", "will", "dans", "sont", "the"):
        assert len(tok.tokenize(word)) == 1, (word, tok.tokenize(word))
    words = [w for text in en + fr for w in text.split()]
    tokens = sum(len(tok.tokenize(text)) for text in en + fr)
    assert tokens < 1.3 * len(words)  # at most ~one piece per word plus the final punctuation


def test_loss_ignores_padding(small_config, small_data):
    """Extra padding (pad ids in inputs, -100 in labels) must not change the loss or the NLL sums."""
    model = random_model(small_config, small_data.tokenizer).eval()
    batch = next(iter(__import__("study.data.batching", fromlist=["make_loader"]).make_loader(
        small_data.train, small_data.tokenizer, 8, shuffle=False)))
    extra = 7
    padded = {
        "input_ids": torch.nn.functional.pad(batch["input_ids"], (0, extra), value=small_data.tokenizer.pad_token_id),
        "attention_mask": torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=0),
        "labels": torch.nn.functional.pad(batch["labels"], (0, extra), value=-100),
    }
    with torch.no_grad():
        assert torch.allclose(model(**batch).loss, model(**padded).loss, atol=1e-5)
    # Over a split: batch size 1 (no padding at all) and 16 (padding in most batches) give the same mean.
    one = token_nll(model, small_data.validation, small_data.tokenizer, 1, torch.device("cpu"))
    many = token_nll(model, small_data.validation, small_data.tokenizer, 16, torch.device("cpu"))
    assert one[1] == many[1] == sum(len(x) for x in small_data.validation["labels"])
    assert one[0] / one[1] == pytest.approx(many[0] / many[1], rel=1e-4)


def _module_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("rule", ["frozen", "trained", "untied"])
def test_trainable_counts_follow_the_freezing_rule(small_config, small_data, rule):
    config = small_config.replace(decoder_embedding=rule)
    vocab_by_d = len(small_data.tokenizer) * config.tiny_d_model
    counts = {}
    for name, regime in REGIMES.items():
        model = random_model(config, small_data.tokenizer)
        regime.set_trainable(model, config)
        counts[name] = parameter_counts(model)
    total = _module_params(random_model(config, small_data.tokenizer))
    # encoder/decoder modules include the shared embedding (their embed_tokens *is* `shared`).
    decoder_blocks = _module_params(random_model(config, small_data.tokenizer).decoder) - vocab_by_d
    assert counts["scratch"] == counts["full"] == {"total_params": total, "trainable_params": total}
    assert counts["upstream"] == {"total_params": total, "trainable_params": 0}
    expected = {"frozen": decoder_blocks, "trained": decoder_blocks + vocab_by_d,
                "untied": decoder_blocks + vocab_by_d}[rule]
    assert counts["decoder"]["trainable_params"] == expected
    assert counts["decoder"]["total_params"] == total + (vocab_by_d if rule == "untied" else 0)


def test_untied_decoder_leaves_the_encoder_embedding_unchanged(small_config, small_data):
    config = small_config.replace(decoder_embedding="untied", regime="decoder")
    model = random_model(config, small_data.tokenizer)
    REGIMES["decoder"].set_trainable(model, config)
    before = model.shared.weight.detach().clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = next(iter(__import__("study.data.batching", fromlist=["make_loader"]).make_loader(
        small_data.train, small_data.tokenizer, 8, shuffle=False)))
    model(**batch).loss.backward()
    optimizer.step()
    assert torch.equal(model.shared.weight, before)
    assert not torch.equal(model.lm_head.weight, before)


def test_resumed_trial_matches_uninterrupted(small_config, small_data, tmp_path):
    config = small_config.replace(regime="scratch")
    uninterrupted = run_single(config, data=small_data, quiet=True)
    assert [m["epoch"] for m in uninterrupted] == [1, 2]

    class Interrupted(Exception):
        pass

    checkpoint_dir = tmp_path / "ckpt"

    def report_then_die(metrics, save):
        checkpoint_dir.mkdir()
        save(checkpoint_dir)
        raise Interrupted

    with pytest.raises(Interrupted):
        fit(config, small_data, report_then_die)
    resumed = run_single(config, checkpoint_dir, resume=True, data=small_data, quiet=True)
    assert [m["epoch"] for m in resumed] == [2]
    for key in ("train_loss", "val_loss", "val_bleu", "val_chrf", "val_exact_match", "lr"):
        assert resumed[0][key] == pytest.approx(uninterrupted[1][key], rel=1e-6, abs=1e-9), key


def test_bleu_equals_sacrebleu_command_line(tmp_path):
    hyps = ["Le chat mange la pomme.", "Elle est allée au marché.", "Nous irons à la maison demain."]
    refs = ["Le chat mange une pomme.", "Elle est allée au marché.", "Nous irons à la maison."]
    (tmp_path / "hyp.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    def cli(metric: str) -> float:
        out = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i",
                              str(tmp_path / "hyp.txt"), "-m", metric, "-b", "-w", "4"],
                             capture_output=True, text=True, check=True)
        return float(out.stdout)

    scores = translation_scores(hyps, refs)
    assert round(scores["bleu"], 4) == cli("bleu")
    assert round(scores["chrf"], 4) == cli("chrf")
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["bleu_signature"].startswith("nrefs:1|")


def test_evaluate_caps_generation_by_the_source_not_the_labels(small_config, small_data):
    """`score_split()` (what every epoch and the test scoring run) on a split whose labels are ~10x longer than
    its sources, with a model that can never end a sentence: every hypothesis stops at the source-derived
    limit the docs give (1.5 x the source's tokens without the task prefix, + 10), far below the labels'
    length and `max_target_tokens`."""
    from datasets import Dataset

    tok = small_data.tokenizer
    word = tok("chat", add_special_tokens=False).input_ids
    assert len(word) == 1 and tok.convert_ids_to_tokens(word[0]).startswith("\u2581")  # a whole word, "▁chat"
    model = random_model(small_config, tok)
    # The only token it may ever write is "chat": no end-of-sequence, so only the limit stops it, and each
    # hypothesis's word count is the number of tokens it generated.
    model.generation_config.suppress_tokens = [i for i in range(model.config.vocab_size) if i != word[0]]
    # The 4 longest and the 4 shortest validation sources: with batches of 4 sorted by length, one batch each.
    ranked = sorted((list(ids) for ids in small_data.validation["input_ids"]), key=len)
    groups = [ranked[-4:], ranked[:4]]
    sources = groups[0] + groups[1]
    assert len(groups[0][0]) > len(groups[1][-1]) + 3
    labels = [list(small_data.validation["labels"][0]) * 12 for _ in sources]
    assert min(map(len, labels)) > 100
    split = Dataset.from_dict({"input_ids": sources, "labels": labels, "en": [""] * 8,
                               "fr": [tok.decode(x, skip_special_tokens=True) for x in labels]})
    config = small_config.replace(max_target_tokens=300, eval_batch_size=4, num_beams=1)
    _, hypotheses, _ = score_split(model, split, tok, config, torch.device("cpu"))
    prefix = len(tok(config.prefix.strip(), add_special_tokens=False).input_ids)
    # A batch's limit comes from its longest source: its tokens (</s> included) without the task prefix.
    bounds = [int(1.5 * (max(map(len, group)) - prefix)) + 10 for group in groups for _ in group]
    for source, hypothesis, bound in zip(sources, hypotheses, bounds):
        words = hypothesis.split()
        assert set(words) == {"chat"}
        assert len(words) <= bound < 60, (len(source), len(words), bound)
        assert len(words) >= bound - 1  # it did babble to the limit: the cap, not an end token, stopped it
    # The long sources' limit is longer than the short ones': a per-batch limit, from each batch's sources.
    assert len(hypotheses[0].split()) > len(hypotheses[-1].split())


def test_diverging_learning_rate_ends_as_diverged(small_config, small_data):
    history = run_single(small_config.replace(regime="scratch", lr=1e30, max_grad_norm=1e30, warmup_ratio=0.0),
                         data=small_data, quiet=True)
    assert history[-1]["diverged"] is True
    assert history[-1]["val_bleu"] == 0.0
    assert math.isnan(history[-1]["train_loss"])


def test_pretrained_regimes_never_use_random_weights_as_pretrained(small_config, small_data):
    """Without an upstream, `decoder` must fail loudly rather than fine-tune a random init."""
    from study.config import StudyError
    from study.model import weights as models

    with pytest.raises(StudyError, match="needs a pretrained tiny upstream"):
        models.pretrained_model(small_config.replace(regime="decoder"), small_data.tokenizer, None)


EPOCH_LINE = re.compile(r"epoch +(?P<epoch>\d+)  train_loss (?P<train_loss>\S+)  val_loss (?P<val_loss>\S+)  "
                        r"val_ppl (?P<val_ppl>\S+)  val_bleu (?P<val_bleu>\S+)  val_chrf (?P<val_chrf>\S+)  "
                        r"exact (?P<exact>\S+)  lr (?P<lr>\S+)  (?P<seconds>\S+)s  (?P<tokens_per_s>\S+) tok/s$")


def test_epoch_line_shows_every_metric_of_the_epoch():
    from study.trial import format_epoch

    metrics = {"epoch": 3, "train_loss": 1.23456, "val_loss": 2.5, "val_ppl": 12.182494, "val_bleu": 17.256,
               "val_chrf": 40.5, "val_exact_match": 0.125, "lr": 0.00012345, "epoch_time_s": 12.34,
               "train_tokens_per_s": 12345.6, "diverged": False}
    assert format_epoch(metrics) == ("epoch  3  train_loss 1.235  val_loss 2.500  val_ppl 12.18  val_bleu 17.26  "
                                     "val_chrf 40.50  exact 0.125  lr 1.23e-04  12.3s  12,346 tok/s")
    # A diverged epoch: what is not a number shows as "-", and the line says DIVERGED.
    diverged = {**metrics, "train_loss": float("nan"), "val_loss": float("nan"), "val_ppl": None, "diverged": True}
    assert format_epoch(diverged).startswith("epoch  3  train_loss -  val_loss -  val_ppl -  val_bleu 17.26")
    assert format_epoch(diverged).endswith("tok/s  DIVERGED")


def test_trial_cli_prints_a_line_per_epoch(small_config, capsys):
    code = trial_main(["--regime", "scratch", "--data", small_config.data, "--cache-dir", small_config.cache_dir,
                       "--epochs", "1", *SMALL_FLAGS, "--max-eval-pairs", "20", "--device", "cpu"])
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 1
    fields = EPOCH_LINE.match(lines[0])
    assert fields, lines[0]
    values = {k: float(v.replace(",", "")) for k, v in fields.groupdict().items()}
    assert values["epoch"] == 1 and values["train_loss"] > 0 and values["seconds"] > 0 and values["tokens_per_s"] > 0
    assert values["val_ppl"] == pytest.approx(math.exp(values["val_loss"]), rel=0.01)  # the same evaluation
    assert 0 <= values["val_bleu"] <= 100 and 0 <= values["val_chrf"] <= 100 and 0 <= values["exact"] <= 1
    assert values["lr"] == 0.0  # one epoch: the linear schedule has decayed to 0 by its last step


@pytest.mark.parametrize("argv, needle", [
    (["--regime", "sideways"], "unknown regime"),
    (["--data", "/nonexistent/pairs.tsv"], "/nonexistent/pairs.tsv"),
    (["--epochs", "0"], "epochs must be positive"),
    (["--split", "0.5", "0.2", "0.2"], "add up to 1"),
])
def test_trial_cli_bad_input_is_one_line(argv, needle, capsys, tmp_path):
    code = trial_main(argv + ["--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0]


def test_auto_precision_uses_bf16_on_a_cpu_only_where_it_pays(tmp_path, monkeypatch):
    """bf16 needs the CPU's native bf16 (a flag, not a timing) and matmuls big enough to gain from it: batch size x
    d_model, as measured (the tiny model at batch 64, not 16; t5-small from batch 16)."""
    from study.config import StudyError
    from study.model import device as dev

    with_bf16, without = tmp_path / "bf16", tmp_path / "none"
    with_bf16.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16 amx_tile\n")
    without.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
    assert dev.cpu_has_native_bf16.__wrapped__(str(with_bf16))
    assert not dev.cpu_has_native_bf16.__wrapped__(str(without))
    assert not dev.cpu_has_native_bf16.__wrapped__(str(tmp_path / "absent"))
    cpu = torch.device("cpu")
    native = dev.cpu_has_native_bf16()
    bf16_if_native = "bf16" if native else "fp32"
    assert dev.resolve_precision("auto", cpu, 128, 16) == "fp32"  # the quick preset's tiny model, its usual batch
    assert dev.resolve_precision("auto", cpu, 128, 64) == bf16_if_native  # measured 1.09-1.15x in bf16 there
    assert dev.resolve_precision("auto", cpu, 512, 16) == bf16_if_native  # t5-small
    assert dev.resolve_precision("auto", cpu, 512, 8) == "fp32"
    assert dev.resolve_precision("auto", cpu, 512) == "fp32"  # batch size unknown: nothing to gain is assumed
    assert dev.resolve_precision("bf16", cpu, 128) == "bf16" and dev.resolve_precision("fp32", cpu, 512) == "fp32"
    # the rule itself, as on a CPU with native bf16 whatever this machine has
    monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda: True)
    assert [dev.resolve_precision("auto", cpu, 128, b) for b in (16, 32, 64, 128)] == ["fp32", "fp32", "bf16", "bf16"]
    assert [dev.resolve_precision("auto", cpu, 512, b) for b in (8, 16)] == ["fp32", "bf16"]
    with pytest.raises(StudyError, match="precision must be one of"):
        dev.resolve_precision("fp16", cpu)


@pytest.mark.slow
def test_bf16_trial_keeps_fp32_weights_and_optimizer_state(small_config, small_data, tmp_path):
    """bf16 autocast changes the arithmetic (losses differ from fp32's) but not what is stored: weights and
    AdamW's moments stay fp32, and validation still scores."""
    from study.training.checkpoints import load_checkpoint

    config = small_config.replace(regime="scratch", epochs=1)
    fp32 = run_single(config.replace(precision="fp32"), data=small_data, quiet=True)[0]
    bf16 = run_single(config.replace(precision="bf16"), tmp_path, data=small_data, quiet=True)[0]
    assert bf16["train_loss"] != fp32["train_loss"]  # autocast really ran in bf16
    assert bf16["val_loss"] == pytest.approx(fp32["val_loss"], rel=0.02) and math.isfinite(bf16["val_bleu"])
    state = load_checkpoint(tmp_path)
    assert {t.dtype for t in state["model"].values()} == {torch.float32}
    moments = [t for s in state["optimizer"]["state"].values() for k, t in s.items() if k.startswith("exp_avg")]
    assert moments and {t.dtype for t in moments} == {torch.float32}
    assert state["config"]["precision"] == "bf16"
