"""study.pretrain: T5 span corruption, a real (tiny) pretraining run, the upstream cache and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_MODEL, write_pairs

from study import pretrain as pretrain_cli
from study.config import Config, StudyError
from study.data import span_corruption as sc
from study.training import pretraining as pt

SENTINELS = list(range(1000, 1100))  # stand-ins for the ids of <extra_id_0> ... <extra_id_99>
EOS = 1


def _reconstruct(inputs: list[int], targets: list[int]) -> list[int]:
    """The original sequence: each sentinel of the input replaced by the tokens after it in the target."""
    assert inputs[-1] == EOS and targets[-1] == EOS
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets[:-1]:
        if token in SENTINELS:
            current = token
            spans[current] = []
        else:
            assert current is not None, "target tokens before the first sentinel"
            spans[current].append(token)
    out: list[int] = []
    for token in inputs[:-1]:
        out.extend(spans.pop(token) if token in SENTINELS else [token])
    assert not spans, "a target span has no sentinel in the input"
    return out


@pytest.mark.parametrize("random_roll", [False, True])
def test_span_corrupt_sentinels_in_order_and_lossless(random_roll):
    rng = np.random.default_rng(0)
    for _ in range(500):
        ids = rng.integers(3, 900, size=int(rng.integers(1, 120))).tolist()
        inputs, targets = sc.span_corrupt(ids, rng, SENTINELS, EOS, random_roll=random_roll)
        in_sentinels = [t for t in inputs if t in SENTINELS]
        out_sentinels = [t for t in targets if t in SENTINELS]
        assert in_sentinels == out_sentinels == SENTINELS[:len(in_sentinels)]
        assert inputs.count(EOS) == targets.count(EOS) == 1  # eos only at the end
        if len(ids) >= 2:
            assert in_sentinels, "a sequence of 2+ tokens always gets at least one noise span"
            assert targets[0] == SENTINELS[0]
        assert _reconstruct(inputs, targets) == ids


def test_span_corrupt_known_example():
    ids = list(range(10, 30))  # 20 tokens: 3 noise tokens in 1 span, at the end without a roll
    inputs, targets = sc.span_corrupt(ids, np.random.default_rng(1), SENTINELS, EOS)
    assert inputs == list(range(10, 27)) + [SENTINELS[0], EOS]
    assert targets == [SENTINELS[0], 27, 28, 29, EOS]


def _spans(mask: np.ndarray) -> list[int]:
    lengths, run = [], 0
    for noisy in mask:
        if noisy:
            run += 1
        elif run:
            lengths.append(run)
            run = 0
    return lengths + ([run] if run else [])


def test_noise_density_and_mean_span_length():
    rng = np.random.default_rng(0)
    fractions, span_lengths = [], []
    for _ in range(2000):
        length = int(rng.integers(20, 101))
        mask = sc.noise_mask(length, rng)
        fractions.append(mask.mean())
        span_lengths.extend(_spans(mask))
    assert abs(np.mean(fractions) - 0.15) < 0.02
    assert abs(np.mean(span_lengths) - 3.0) < 0.5
    # the exact counts of T5's random_spans_noise_mask: round(L * 0.15) tokens, round(that / 3) spans
    for length in (20, 37, 64, 100):
        mask = sc.noise_mask(length, rng)
        assert mask.sum() == round(length * 0.15)
        assert len(_spans(mask)) == max(1, round(round(length * 0.15) / 3))
        assert not mask[0] and mask[-1]  # non-noise first, noise last (no roll)


def test_random_roll_spreads_the_span_over_short_sentences():
    rng = np.random.default_rng(0)
    plain = np.array([sc.noise_mask(10, rng) for _ in range(400)])
    rolled = np.array([sc.noise_mask(10, rng, random_roll=True) for _ in range(400)])
    assert plain[:, -2:].all() and not plain[:, :-2].any()  # T5 without a roll: always the last 2 tokens
    assert (rolled.sum(axis=1) == 2).all()
    assert rolled.mean(axis=0).min() > 0.1  # every position is dropped sometimes (0.2 expected)


def test_span_corrupt_is_deterministic_per_seed():
    ids = list(range(10, 70))

    def run(seed):
        rng = np.random.default_rng(seed)
        return [sc.span_corrupt(ids, rng, SENTINELS, EOS, random_roll=True) for _ in range(20)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_span_corrupt_short_sequences():
    rng = np.random.default_rng(0)
    assert sc.span_corrupt([], rng, SENTINELS, EOS) == ([EOS], [EOS])
    assert sc.span_corrupt([7], rng, SENTINELS, EOS) == ([7, EOS], [EOS])
    assert sc.span_corrupt([7, 8], rng, SENTINELS, EOS) == ([7, SENTINELS[0], EOS], [SENTINELS[0], 8, EOS])
    for roll in (False, True):
        inputs, targets = sc.span_corrupt([7, 8], rng, SENTINELS, EOS, random_roll=roll)
        assert _reconstruct(inputs, targets) == [7, 8]


def test_monolingual_corpus_breaks_the_alignment():
    en = [f"en {i}" for i in range(1000)]
    fr = [f"fr {i}" for i in range(1000)]
    texts = pt.monolingual_corpus(en, fr, seed=0)
    assert sorted(texts) == sorted(en + fr)
    assert texts == pt.monolingual_corpus(en, fr, seed=0)
    assert texts != pt.monolingual_corpus(en, fr, seed=1)
    neighbours = sum(texts[i].split()[1] == texts[i + 1].split()[1] for i in range(len(texts) - 1))
    assert neighbours < 10  # a translation next to its sentence only by chance (~2 expected)


def test_pack_keeps_every_sentence_whole_and_in_order():
    rng = np.random.default_rng(0)
    sentences = [[int(k)] * int(n) for k, n in enumerate(rng.integers(1, 20, size=300))] + [[999] * 90]
    order = rng.permutation(len(sentences))
    examples = pt.pack(sentences, 64, order)
    assert [t for ex in examples for t in ex] == [t for i in order for t in sentences[i]]  # nothing lost or moved
    assert all(len(ex) <= 64 for ex in examples if ex != [999] * 90)  # only the overlong sentence is alone
    lengths = [len(ex) for ex in examples]
    firsts = [len(sentences[i]) for i in order]
    # greedy: an example ends only where the next sentence would not fit
    starts = np.cumsum([0] + lengths)[:-1]
    sentence_starts = dict(zip(np.cumsum([0] + firsts)[:-1].tolist(), firsts, strict=True))
    for start, length in zip(starts[1:], lengths[:-1], strict=True):
        assert length + sentence_starts[int(start)] > 64
    assert 3 < np.mean(lengths) / np.mean(firsts) < 7  # several sentences per example


# ------------------------------------------------------------------------------------ real pretraining


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer tiny config, monolingual text and the project's tokenizer trained on it (offline)."""
    from study.data import tokenizer as tokenizer_lib

    try:
        from study.data.sample.corpus import generate_monolingual
    except ImportError:  # pragma: no cover - the corpus module is optional here
        from tests.conftest import tiny_sentences

        en, fr = tiny_sentences(400, seed=1), tiny_sentences(400, seed=2)
    else:
        en, fr = generate_monolingual("en", 400, seed=1), generate_monolingual("fr", 400, seed=1)
    config = Config(tiny_d_model=32, tiny_layers=1, tiny_heads=2, tiny_d_ff=64, tiny_vocab_size=200,
                    torch_threads=1, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return config, tokenizer_lib.train_tiny_tokenizer(en, fr, config), en, fr


@pytest.mark.parametrize("pack_tokens", [0, 64])
def test_pretrain_writes_a_loadable_model_and_the_loss_falls(tiny, tmp_path, pack_tokens, monkeypatch):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    config, tokenizer, en, fr = tiny
    out = tmp_path / "upstream"
    trained: list[T5ForConditionalGeneration] = []

    class Recorded(T5ForConditionalGeneration):  # the very model pretrain() trains, kept for a look after
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trained.append(self)

    monkeypatch.setattr(pt, "T5ForConditionalGeneration", Recorded)
    path = pt.pretrain(config, tokenizer, pt.monolingual_corpus(en, fr, 0), out,
                       pt.PretrainSettings(steps=40, batch_size=32, lr=5e-3, pack_tokens=pack_tokens),
                       progress=False)
    assert path == out
    model = T5ForConditionalGeneration.from_pretrained(out)
    assert model.config.d_model == 32 and model.config.vocab_size == len(tokenizer)
    # Pretrained without dropout (as T5 v1.1): every dropout layer of the model that trained had p = 0 ...
    assert len(trained) == 1
    dropouts = [m.p for m in trained[0].modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and set(dropouts) == {0.0}
    # ... and saved with the tiny model's dropout, which the fine-tuning model's layers have.
    assert model.config.dropout_rate == 0.1
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    loaded = AutoTokenizer.from_pretrained(out)
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "pretrain.json").read_text())
    curve = record["loss_curve"]
    assert len(curve) == 40 and record["settings"]["steps"] == 40 and record["sentences"] == 800
    assert record["settings"]["dropout_rate"] == 0.0
    assert np.mean(curve[-5:]) < np.mean(curve[:5]) - 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["upstream"]  # no temporary directory left behind


def test_pretraining_moves_each_weight_relative_to_its_scale(tiny, tmp_path):
    """T5 initialises its embeddings at std 1 and its attention queries at std ~(d_model * d_kv)^-1/2. An
    optimizer whose step ignores that scale (AdamW) left the embeddings all but untouched while the queries
    moved most, and that upstream fine-tuned worse than a random one. Adafactor's steps are relative: the
    embeddings must move about as much, for their size, as the queries. `--optimizer adamw` stays
    available to reproduce the comparison, so it is checked to be the scale-blind one."""
    from transformers import T5ForConditionalGeneration

    from study.model import weights as models

    config, tokenizer, en, fr = tiny
    torch.manual_seed(config.seed)  # pretrain() initialises exactly so
    start = T5ForConditionalGeneration(models.tiny_config(config, tokenizer)).state_dict()
    texts = pt.monolingual_corpus(en, fr, 0)

    def embedding_over_query_movement(**settings) -> float:
        out = pt.pretrain(config, tokenizer, texts, tmp_path / settings.get("optimizer", "default"),
                          pt.PretrainSettings(steps=30, batch_size=16, **settings), progress=False)
        end = models.load_state_dict(out)

        def moved(name: str) -> float:
            return float((end[name] - start[name]).norm() / start[name].norm())

        query = moved("encoder.block.0.layer.0.SelfAttention.q.weight")
        assert query > 0.05
        return moved("shared.weight") / query

    assert embedding_over_query_movement() > 1 / 4  # the default: Adafactor
    assert embedding_over_query_movement(optimizer="adamw", lr=5e-4) < 1 / 10  # measured ~1/20


def test_interrupted_pretraining_leaves_no_directory(tiny, tmp_path, monkeypatch):
    config, tokenizer, en, fr = tiny

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pt, "_plot", crash)  # dies while writing the output, after the weights
    with pytest.raises(KeyboardInterrupt):
        pt.pretrain(config, tokenizer, en, tmp_path / "upstream", pt.PretrainSettings(steps=2, batch_size=8),
                    progress=False)
    assert list(tmp_path.iterdir()) == []


def test_pretrain_refuses_a_non_empty_directory(tiny, tmp_path):
    config, tokenizer, en, _ = tiny
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(StudyError, match="not empty"):
        pt.pretrain(config, tokenizer, en, tmp_path, pt.PretrainSettings(steps=2), progress=False)


def test_ensure_upstream_reuses_the_cache(tiny, monkeypatch, capsys):
    config, tokenizer, en, fr = tiny
    settings = pt.PretrainSettings(steps=3, batch_size=8)
    first = pt.ensure_upstream(config, tokenizer, en, fr, settings=settings, progress=False)
    assert first.parent == Path(config.cache_dir) / "upstream"
    assert (first / "config.json").exists() and "pretraining the tiny upstream" in capsys.readouterr().out

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretrained again instead of reusing the cache")

    monkeypatch.setattr(pt, "pretrain", no_pretraining)
    assert pt.ensure_upstream(config, tokenizer, en, fr, settings=settings) == first
    assert f"reusing pretrained tiny upstream: {first}" in capsys.readouterr().out


def test_upstream_key_covers_every_input(tiny, tmp_path):
    """Each input that changes the pretrained weights changes the cache key: the corpus, the tokenizer, every
    model size, the seed and every setting. A key missing one would hand a study another study's upstream."""
    from study.data import tokenizer as tokenizer_lib

    config, tokenizer, en, fr = tiny
    texts = pt.monolingual_corpus(en, fr, config.seed)
    settings = pt.PretrainSettings()
    key = pt.upstream_key(config, tokenizer, texts, settings)
    assert key == pt.upstream_key(config, tokenizer, list(texts), pt.PretrainSettings())
    # Another tokenizer over the same text (another vocabulary size), with the model config unchanged.
    other_tokenizer = tokenizer_lib.train_tiny_tokenizer(en, fr, config.replace(tiny_vocab_size=150,
                                                                                cache_dir=str(tmp_path)))
    assert other_tokenizer.get_vocab() != tokenizer.get_vocab()
    variants = {
        "steps": pt.upstream_key(config, tokenizer, texts, pt.PretrainSettings(steps=settings.steps + 1)),
        "lr": pt.upstream_key(config, tokenizer, texts, pt.PretrainSettings(lr=1e-3)),
        "noise": pt.upstream_key(config, tokenizer, texts, pt.PretrainSettings(noise_density=0.3)),
        "packing": pt.upstream_key(config, tokenizer, texts, pt.PretrainSettings(pack_tokens=0)),
        "dropout": pt.upstream_key(config, tokenizer, texts, pt.PretrainSettings(dropout_rate=0.1)),
        "optimizer": pt.upstream_key(config, tokenizer, texts, pt.PretrainSettings(optimizer="adamw")),
        "texts": pt.upstream_key(config, tokenizer, texts[:-1], settings),
        "seed": pt.upstream_key(config.replace(seed=1), tokenizer, texts, settings),
        "tokenizer": pt.upstream_key(config, other_tokenizer, texts, settings),
        **{name: pt.upstream_key(config.replace(**{name: getattr(config, name) * 2}), tokenizer, texts, settings)
           for name in ("tiny_vocab_size", "tiny_d_model", "tiny_layers", "tiny_heads", "tiny_d_ff")},
    }
    for name, variant in variants.items():
        assert variant != key, f"the upstream cache key ignores {name}"
    assert len({key, *variants.values()}) == len(variants) + 1


def test_cli_pretrains_into_out(tmp_path, capsys):
    out = tmp_path / "upstream"
    code = pretrain_cli.main(["--data", "sample", "--max-train-pairs", "500", "--steps", "2", "--batch-size", "8",
                    "--tiny-d-model", "32", "--tiny-layers", "1", "--tiny-heads", "2", "--tiny-d-ff", "64",
                    "--torch-threads", "1", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    # --max-train-pairs caps labelled pairs only: pretraining reads the whole training split
    assert json.loads((out / "pretrain.json").read_text())["sentences"] > 2 * 500


def test_cli_error_is_one_line(tmp_path, capsys):
    assert pretrain_cli.main(["--data", str(tmp_path / "missing.tsv"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "sgd"], "unknown pretraining optimizer 'sgd'; choose from adafactor, adamw"),
    (["--noise-density", "1.5"], "noise density must be in (0, 1) and mean span length at least 1, got 1.5 and 3.0"),
    (["--steps", "0"], "steps, batch size and lr must be positive, got 0, 16, 0.01"),
    (["--pack-tokens", "500"], "pack tokens must be between 0 (no packing) and 128, got 500"),
])
def test_cli_refuses_bad_settings_at_once_and_writes_nothing(tmp_path, capsys, flags, message):
    out, cache = tmp_path / "upstream", tmp_path / "cache"
    assert pretrain_cli.main(["--data", "sample", "--cache-dir", str(cache), "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not out.exists() and not cache.exists()  # refused before the data or a tokenizer was prepared


def test_the_study_pretrains_on_its_whole_training_split_only(tmp_path, monkeypatch):
    """What a study hands to pretraining: every training sentence, English and French (even under
    max_train_pairs, which caps labelled pairs only), and no validation or test sentence."""
    from study.data.prepared import prepare_text

    pairs = tmp_path / "pairs.tsv"
    write_pairs(pairs, 300, seed=3)
    config = Config(data=str(pairs), cache_dir=str(tmp_path / "cache"), regime="full", max_train_pairs=50,
                    **SMALL_MODEL, torch_threads=1)
    seen: list[str] = []

    class Captured(Exception):
        pass

    def capture(config, tokenizer, texts, out_dir, settings, **kwargs):
        seen.extend(texts)
        raise Captured

    monkeypatch.setattr(pt, "pretrain", capture)
    with pytest.raises(Captured):
        pt.prepare_data_with_upstream(config, need_upstream=True)
    text = prepare_text(config)
    splits, whole_train = text.splits, text.whole_train
    train_text = set(whole_train["en"]) | set(whole_train["fr"])
    held_out = {s for name in ("validation", "test") for col in ("en", "fr") for s in splits[name][col]}
    assert len(whole_train) > 50 and len(seen) == 2 * len(whole_train)
    assert set(seen) == train_text
    assert not set(seen) & (held_out - train_text)
    assert set(splits["validation"]["en"]) & set(seen) == set()  # split by English sentence: none shared
