"""Tokenize the splits once (batched `Dataset.map`), cached on disk under a key of their content.

Sources are `config.prefix + en` (T5's task prefix) plus eos, labels the French plus eos, both
unpadded: `study.data.batching` pads each batch to its own longest row, labels with -100.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
from datasets import DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from study.common import atomic_dir, content_hash, publish_dir, settings_hash
from study.config import Config, StudyError

DATA_VERSION = "2"  # bump whenever tokenizing changes what a cache entry holds (2: keys by study.common)
COUNTS_FILE = "study_counts.json"


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of everything about a tokenizer that changes its ids: name, size, vocabulary, pipeline."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pipeline = backend.to_str() if backend is not None else json.dumps(
        sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return content_hash([tokenizer.name_or_path, str(len(tokenizer)), str(tokenizer.eos_token_id), pipeline])


def _content_fingerprint(splits: DatasetDict) -> str:
    def parts():
        for name in splits:
            table = splits[name].select_columns(["en", "fr"]).with_format("arrow")[:]
            for column in ("en", "fr"):
                yield f"{name}.{column}"
                yield from table[column].to_pylist()

    return content_hash(parts())


def tokenized_cache_key(splits: DatasetDict, tokenizer: PreTrainedTokenizerBase, config: Config) -> str:
    """The cache entry of these splits under this tokenizer and these token settings.

    The splits are keyed by their content (every en/fr string, in order), which already reflects the
    data file and every cleaning/splitting setting, so a stale entry can never be returned.
    """
    return settings_hash({"version": DATA_VERSION, "content": _content_fingerprint(splits),
                          "tokenizer": tokenizer_fingerprint(tokenizer), "prefix": config.prefix,
                          "max_source_tokens": config.max_source_tokens,
                          "max_target_tokens": config.max_target_tokens, "overlong": config.overlong})


def _cut(ids: list[int], limit: int, eos: int) -> list[int]:
    """Truncate to `limit` ids, keeping the final eos."""
    return ids[:limit - 1] + [eos] if ids and ids[-1] == eos else ids[:limit]


def _tokenize_batch(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase, config: Config) -> dict[str, list]:
    eos = tokenizer.eos_token_id
    sources = tokenizer([config.prefix + en for en in batch["en"]])["input_ids"]
    targets = tokenizer(text_target=batch["fr"])["input_ids"]
    out: dict[str, list] = {"en": [], "fr": [], "input_ids": [], "labels": [], "truncated": []}
    for en, fr, src, tgt in zip(batch["en"], batch["fr"], sources, targets, strict=True):
        if not tgt or tgt[-1] != eos:
            tgt = tgt + [eos]
        over = len(src) > config.max_source_tokens or len(tgt) > config.max_target_tokens
        if over and config.overlong == "drop":
            continue
        if over:
            src, tgt = _cut(src, config.max_source_tokens, eos), _cut(tgt, config.max_target_tokens, eos)
        for key, value in (("en", en), ("fr", fr), ("input_ids", src), ("labels", tgt), ("truncated", over)):
            out[key].append(value)
    return out


def tokenize_splits(splits: DatasetDict, tokenizer: PreTrainedTokenizerBase,
                    config: Config) -> tuple[DatasetDict, dict[str, int]]:
    """Tokenize every split once, cached under `config.cache_dir`/tokenized.

    Sources have at most `config.max_source_tokens` ids, labels at most `config.max_target_tokens`;
    longer pairs are dropped or truncated per `config.overlong`. No padding here. Columns: en, fr,
    input_ids, labels. The cache entry is written to a temporary directory and renamed into place, so a
    crash never leaves a half-written entry. Counts: final split sizes, `<split>_dropped_overlong`,
    `<split>_truncated_overlong`, `cache_hit`.
    """
    if tokenizer.eos_token_id is None:
        raise StudyError(f"tokenizer {tokenizer.name_or_path!r} has no eos token; a T5 tokenizer is needed")
    final = Path(config.cache_dir) / "tokenized" / tokenized_cache_key(splits, tokenizer, config)
    if (final / COUNTS_FILE).exists():
        print(f"tokenized cache hit: {final}", flush=True)
        counts = json.loads((final / COUNTS_FILE).read_text())
        return load_from_disk(str(final)), {**counts, "cache_hit": 1}
    print(f"tokenized cache miss: {final}", flush=True)
    counts: dict[str, int] = {}
    tokenized = {}
    for name in splits:
        ds = splits[name].map(_tokenize_batch, batched=True, batch_size=1000, fn_kwargs={
            "tokenizer": tokenizer, "config": config}, remove_columns=splits[name].column_names,
            new_fingerprint=f"{final.name}-{name}", keep_in_memory=True, desc=f"tokenizing {name}")
        truncated = int(pc.sum(ds.with_format("arrow")[:]["truncated"]).as_py() or 0)
        counts[f"{name}_dropped_overlong"] = len(splits[name]) - len(ds)
        counts[f"{name}_truncated_overlong"] = truncated
        counts[name] = len(ds)
        tokenized[name] = ds.remove_columns("truncated")
    tmp = atomic_dir(final)
    try:
        DatasetDict(tokenized).save_to_disk(str(tmp))
        (tmp / COUNTS_FILE).write_text(json.dumps(counts))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_dir(tmp, final)
    return load_from_disk(str(final)), {**counts, "cache_hit": 0}
