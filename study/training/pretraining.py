"""The offline upstream for `tiny`: T5's span-corruption pretraining on monolingual English and French.

There is no model hub offline, so the `upstream`, `decoder` and `full` regimes of the tiny model start
from weights this module pretrains, with the objective T5 itself was pretrained on (Raffel et al. 2020,
section 3.1.4): drop ~15% of the tokens in spans of mean length 3, replace each span by a sentinel
`<extra_id_k>`, and make the model write the dropped spans back.

    "Thank you for inviting me to your party last week"
    input:  "Thank you <extra_id_0> me to your party <extra_id_1> week</s>"
    target: "<extra_id_0> for inviting <extra_id_1> last</s>"

(the objective itself: `study/data/span_corruption.py`; this module is the run, its data and its cache;
the command line: `study/pretrain.py`).

The text is the training split only (validation and test never reach pretraining), English and French
shuffled independently, so the model never sees a sentence next to its translation. As T5 packs C4 text
into 512-token sequences, consecutive sentences (in a fresh random order each pass) are packed into
64-token examples before corruption, so an example holds several noise spans. Results are cached
under `<cache_dir>/upstream/<key>`, the key hashing everything that changes the weights.

    python -m study.pretrain                   # pretrain (or reuse) the upstream of `--data sample`
    python -m study.pretrain --steps 300 --out /tmp/upstream
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorForSeq2Seq, T5ForConditionalGeneration, get_linear_schedule_with_warmup
from transformers.optimization import Adafactor

from study.common import atomic_dir, content_hash, format_duration, publish_dir, settings_hash
from study.config import Config, StudyError
from study.data.batching import LengthGroupedBatchSampler
from study.data.encoding import tokenizer_fingerprint
from study.data.prepared import PreparedData, prepare_text, tokenize_text
from study.data.span_corruption import sentinel_ids_of, span_corrupt
from study.data.tokenizer import is_tiny
from study.model.device import autocast, pick_device
from study.model.weights import load_state_dict, tiny_config
from study.training.step import optimizer_step

PRETRAIN_VERSION = "4"  # bump whenever this module changes what the pretrained weights would be
MAX_TOKENS = 128  # longer sentences are cut: bounds memory and keeps the spans under T5's 100 sentinels
WARMUP_FRACTION = 0.05
MAX_GRAD_NORM = 1.0
OPTIMIZERS = ("adafactor", "adamw")
ADAMW_WEIGHT_DECAY = 0.01  # only with --optimizer adamw (Adafactor, as in T5, has none)
_TINY_FIELDS = ("tiny_vocab_size", "tiny_d_model", "tiny_layers", "tiny_heads", "tiny_d_ff")


@dataclass(frozen=True)
class PretrainSettings:
    # Chosen by measurement (benchmarks/pretraining_gain.py; docs/findings.md, "How the upstream got there"):
    # - packing (as T5 packs C4 into 512-token sequences): 64-token examples of ~6 sentences carry ~3 noise
    #   spans each instead of one, and gave fine-tuning a lower validation loss than single sentences;
    # - Adafactor, T5's own pretraining optimizer, with its update scaled to each weight's size
    #   (`scale_parameter`), at lr 1e-2: AdamW moves every weight by about lr a step whatever its scale,
    #   so T5's embeddings (initialised at std 1) hardly moved while the attention queries (std 0.016)
    #   moved most (after 800 steps: embeddings 7 % of their norm, first queries 47 %; Adafactor: 46 % and
    #   15 %). Fine-tuned at equal lr on the quick preset, the AdamW upstream reached 13.1 val BLEU at epoch
    #   3, below scratch's 14.8; the Adafactor one 22.2 (docs/findings.md, "How the upstream got there").
    # About 1 min 40 s to 2 min for 800 steps of the default tiny model on 2 CPU cores.
    steps: int = 1200
    batch_size: int = 16  # examples (packed sequences) per step: ~1,000 tokens
    lr: float = 1e-2  # Adafactor's relative step: each update is about lr x the weight's RMS
    noise_density: float = 0.15  # T5's defaults
    mean_span_length: float = 3.0
    # Unrolled, T5's mask always ends in noise; on short examples that would always hide the last tokens
    # (on T5's 512-token sequences this bias does not matter). A random roll moves the spans anywhere.
    random_roll: bool = True
    pack_tokens: int = 64  # 0: one sentence per example
    # As T5 v1.1: no dropout while pretraining (one pass over plentiful text has nothing to overfit, and
    # each step costs less); the saved model carries the tiny model's usual dropout for fine-tuning.
    dropout_rate: float = 0.0
    # "adamw" (lr 5e-4, weight decay 0.01) is kept to reproduce the comparison above:
    # `python -m study.pretrain --optimizer adamw --lr 5e-4 --out DIR`, then fine-tune with `--model DIR`.
    optimizer: str = "adafactor"


# ------------------------------------------------------------------------------------- batching


def pack(sequences: list[list[int]], pack_tokens: int, order) -> list[list[int]]:
    """The sentences in `order`, concatenated greedily into examples of at most `pack_tokens` tokens.
    Whole sentences only: a sentence longer than `pack_tokens` is an example of its own."""
    examples: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and len(current) + len(sequences[i]) > pack_tokens:
            examples.append(current)
            current = []
        current = current + sequences[i]
    if current:
        examples.append(current)
    return examples


def _packed_batches(sequences: list[list[int]], pack_tokens: int, batch_size: int, rng: np.random.Generator):
    """Batches of packed examples forever; each pass over the corpus packs a fresh permutation."""
    batch: list[list[int]] = []
    while True:
        for example in pack(sequences, pack_tokens, rng.permutation(len(sequences))):
            batch.append(example)
            if len(batch) == batch_size:
                yield batch
                batch = []


def _sentence_batches(lengths: list[int], batch_size: int, seed: int):
    """Index batches forever, one sentence an example (`pack_tokens=0`): each pass a fresh length-grouped
    order from the fine-tuning loop's own sampler (little padding, batches from all over the corpus)."""
    sampler = LengthGroupedBatchSampler(lengths, batch_size, seed=seed, shuffle=True)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from sampler
        epoch += 1


# ----------------------------------------------------------------------------------------- pretraining


def check_settings(s: PretrainSettings) -> None:
    """One clear StudyError for a setting pretraining cannot use (checked before any text is read)."""
    if s.steps <= 0 or s.batch_size <= 0 or not s.lr > 0:
        raise StudyError(f"steps, batch size and lr must be positive, got {s.steps}, {s.batch_size}, {s.lr}")
    if s.optimizer not in OPTIMIZERS:
        raise StudyError(f"unknown pretraining optimizer {s.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if not 0 < s.noise_density < 1 or not s.mean_span_length >= 1:
        raise StudyError(f"noise density must be in (0, 1) and mean span length at least 1, got "
                         f"{s.noise_density} and {s.mean_span_length}")
    if not 0 <= s.dropout_rate < 1:
        raise StudyError(f"dropout rate must be in [0, 1), got {s.dropout_rate}")
    if not 0 <= s.pack_tokens <= MAX_TOKENS:
        raise StudyError(f"pack tokens must be between 0 (no packing) and {MAX_TOKENS}, got {s.pack_tokens}")


def pretrain(config: Config, tokenizer, texts: list[str], out_dir: Path, settings: PretrainSettings, *,
             progress: bool = True) -> Path:
    """Pretrain the tiny T5 of `config` on `texts` with span corruption; save it to `out_dir` and return it.

    `out_dir` becomes a normal Hugging Face model directory (model, tokenizer) plus `pretrain.json`
    (settings, loss curve) and `loss.png`. It appears only once complete: everything is written to a
    temporary directory beside it, renamed into place at the end.
    """
    out_dir = Path(out_dir)
    check_settings(settings)
    steps, batch_size, lr, pack_tokens = settings.steps, settings.batch_size, settings.lr, settings.pack_tokens
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StudyError(f"{out_dir} already exists and is not empty; delete it or choose another output directory")
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = pick_device(config.device)

    # Tokenize once; corruption is redone every time a sentence is drawn, so no two epochs see the same spans.
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    sequences = [ids[:MAX_TOKENS] for ids in encoded if ids]
    if not sequences:
        raise StudyError("no text to pretrain on (every sentence is empty)")
    lengths = np.array([len(ids) for ids in sequences])
    sentinels = sentinel_ids_of(tokenizer)
    eos = tokenizer.eos_token_id
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")

    torch.manual_seed(config.seed)  # the initialisation and dropout
    rng = np.random.default_rng(config.seed)  # batch order and corruption
    model_config = tiny_config(config, tokenizer)
    fine_tuning_dropout, model_config.dropout_rate = model_config.dropout_rate, settings.dropout_rate
    model = T5ForConditionalGeneration(model_config).to(device)
    model.train()
    if settings.optimizer == "adafactor":  # as T5: updates scaled by each weight's RMS, no weight decay
        opt = Adafactor(model.parameters(), lr=lr, scale_parameter=True, relative_step=False, warmup_init=False)
    else:  # every weight moves by about lr a step, whatever its scale
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_WEIGHT_DECAY)
    scheduler = get_linear_schedule_with_warmup(opt, int(WARMUP_FRACTION * steps), steps)  # ours, not Adafactor's
    n_params = sum(p.numel() for p in model.parameters())
    if progress:
        unit = f"examples packed to {pack_tokens} tokens" if pack_tokens else "sentences"
        print(f"pretraining tiny T5 ({n_params / 1e6:.2f} M parameters) for {steps} steps of {batch_size} "
              f"{unit}, from {len(sequences)} sentences ({device})", flush=True)

    losses: list[float] = []
    if pack_tokens:
        batches = _packed_batches(sequences, pack_tokens, batch_size, rng)
    else:
        batches = ([sequences[i] for i in batch] for batch in _sentence_batches(lengths.tolist(), batch_size, config.seed))
    report_every = max(1, steps // 20)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        examples = []
        for ids in next(batches):
            source, target = span_corrupt(ids, rng, sentinels, eos, settings.noise_density,
                                          settings.mean_span_length, settings.random_roll)
            examples.append({"input_ids": source, "labels": target})
        batch = {k: v.to(device) for k, v in collator(examples).items()}  # padded per batch; labels with -100
        with autocast(device):
            loss = model(**batch).loss
        if not torch.isfinite(loss):
            raise StudyError(f"pretraining diverged (non-finite loss) at step {step} with lr {lr:g}; lower --lr")
        optimizer_step(model, loss, opt, scheduler, MAX_GRAD_NORM)
        losses.append(loss.item())
        if progress and (step % report_every == 0 or step == steps):
            elapsed = time.perf_counter() - start
            recent = float(np.mean(losses[-report_every:]))
            print(f"  step {step:>6}/{steps}  loss {recent:.3f}  elapsed {format_duration(elapsed)}  "
                  f"left {format_duration(elapsed / step * (steps - step))}", flush=True)
    seconds = time.perf_counter() - start

    tail = max(1, steps // 20)
    record = {
        "version": PRETRAIN_VERSION, "seed": config.seed,
        "settings": dataclasses.asdict(settings),
        "fixed": {"adafactor": "scale_parameter=True", "adamw_weight_decay": ADAMW_WEIGHT_DECAY,
                  "warmup_fraction": WARMUP_FRACTION,
                  "max_grad_norm": MAX_GRAD_NORM, "max_tokens": MAX_TOKENS},
        "model": {name: getattr(config, name) for name in _TINY_FIELDS} | {"parameters": n_params},
        "sentences": len(sequences),
        "final_loss": float(np.mean(losses[-tail:])),  # mean of the last 5% of steps: one batch is noisy
        "seconds": round(seconds, 1), "device": str(device), "torch_threads": torch.get_num_threads(),
        "loss_curve": [round(x, 4) for x in losses],
    }
    # Same publishing as the tokenizer cache: a dot-directory beside out_dir, renamed onto it when complete,
    # so a killed run leaves nothing the cache would trust.
    tmp = atomic_dir(out_dir)
    try:
        model.config.dropout_rate = fine_tuning_dropout  # what from_pretrained builds for fine-tuning
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "pretrain.json").write_text(json.dumps(record, indent=1) + "\n")
        _plot(losses, tmp / "loss.png", f"tiny T5 span-corruption pretraining ({steps} steps)")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, out_dir)  # if another process published the same cache entry first, keeps theirs
    if not _complete(out_dir):
        raise StudyError(f"could not move the pretrained model into {out_dir}")
    if progress:
        print(f"pretrained in {format_duration(seconds)}: loss {np.mean(losses[:tail]):.3f} -> {record['final_loss']:.3f}; "
              f"saved {out_dir}", flush=True)
    return out_dir


def _plot(losses: list[float], path: Path, title: str) -> None:
    # Figure + savefig uses the Agg canvas without pyplot, so no global backend is switched for the caller.
    from matplotlib.figure import Figure

    steps = np.arange(1, len(losses) + 1)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    fig = Figure(figsize=(7, 4), dpi=110)
    ax = fig.subplots()
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
    ax.plot(steps[window - 1:], smooth, color="tab:blue", linewidth=1.8, label=f"mean of {window} steps")
    ax.set(title=title, xlabel="step", ylabel="cross-entropy loss (target tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


# ------------------------------------------------------------------------------------------------ cache

def _complete(path: Path) -> bool:
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return (path / "config.json").exists() and any((path / name).exists() for name in weights)


def monolingual_corpus(en_texts: list[str], fr_texts: list[str], seed: int) -> list[str]:
    """English and French training sentences, each list shuffled by its own seeded RNG, then interleaved.

    Independent shuffles break the alignment of the pairs: the model sees French and English text,
    never a sentence with its translation, so pretraining teaches no translation by itself.
    """
    en, fr = list(en_texts), list(fr_texts)
    en = [en[i] for i in np.random.default_rng([seed, 1]).permutation(len(en))]
    fr = [fr[i] for i in np.random.default_rng([seed, 2]).permutation(len(fr))]
    n = min(len(en), len(fr))
    return [t for pair in zip(en[:n], fr[:n], strict=True) for t in pair] + en[n:] + fr[n:]


def upstream_key(config: Config, tokenizer, texts: list[str], settings: PretrainSettings) -> str:
    """Cache key of an upstream: the corpus (`texts`, both languages), tokenizer, model sizes, seed, settings."""
    description = {
        "version": PRETRAIN_VERSION,
        "texts": content_hash(texts, 64),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "model": {name: getattr(config, name) for name in _TINY_FIELDS},
        "seed": config.seed,
        "settings": dataclasses.asdict(settings),
        "fixed": [MAX_TOKENS, WARMUP_FRACTION, MAX_GRAD_NORM, ADAMW_WEIGHT_DECAY],
    }
    return settings_hash(description)


def upstream_path(config: Config, tokenizer, texts: list[str], settings: PretrainSettings | None = None) -> Path:
    """Where the upstream of this corpus (`monolingual_corpus`) is cached, made or not; nothing in the key is
    `max_train_pairs`, so studies that differ only in it share one upstream (the data sweep, study/sweep.py)."""
    settings = settings or PretrainSettings(steps=config.pretrain_steps)
    return Path(config.cache_dir) / "upstream" / upstream_key(config, tokenizer, texts, settings)


def ensure_upstream(config: Config, tokenizer, en_texts: list[str], fr_texts: list[str],
                    settings: PretrainSettings | None = None, progress: bool = True) -> Path:
    """The pretrained tiny upstream for this training split and tokenizer: from the cache, or pretrained now.

    `en_texts` and `fr_texts` must come from the training split only (the caller's guarantee). All of
    it, even under `max_train_pairs`: that caps *labelled* pairs, and unlabelled text is plentiful.
    """
    settings = settings or PretrainSettings(steps=config.pretrain_steps)
    texts = monolingual_corpus(en_texts, fr_texts, config.seed)
    path = upstream_path(config, tokenizer, texts, settings)
    if _complete(path):  # entries appear complete or not at all (see pretrain)
        print(f"reusing pretrained tiny upstream: {path}", flush=True)
        return path
    print(f"pretraining the tiny upstream (once; cached in {path})", flush=True)
    return pretrain(config, tokenizer, texts, path, settings, progress=progress)


# ------------------------------------------------------------------------------------ a study's inputs


def prepare_data_with_upstream(config: Config, need_upstream: bool) -> PreparedData:
    """The study's data (`study.data.prepared`) and, when `need_upstream` and the model is `tiny`, the
    pretrained upstream's weights, from the cache or pretrained now on the whole training split."""
    data, add_upstream = prepare_data_upstream_later(config, need_upstream)
    return add_upstream() if add_upstream else data


def prepare_data_upstream_later(config: Config, need_upstream: bool
                               ) -> tuple[PreparedData, Callable[[], PreparedData] | None]:
    """The study's data now, and the step that makes it the data *with* the tiny upstream (from the cache or
    pretrained), to run later — beside the regimes that need no upstream (`study.pipeline`); None when no
    upstream is needed (or the model is a hub or local checkpoint, whose weights are the upstream)."""
    text = prepare_text(config)
    data = tokenize_text(text, config)
    if not (need_upstream and is_tiny(config.model)):
        return data, None

    def add_upstream() -> PreparedData:
        path = ensure_upstream(config, text.tokenizer, list(text.whole_train["en"]), list(text.whole_train["fr"]))
        return dataclasses.replace(data, upstream=load_state_dict(path), upstream_dir=str(path))

    return data, add_upstream
