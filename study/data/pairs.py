"""English→French pairs: load, clean and split by source sentence. Tokenizing: `study.data.encoding`;
batching: `study.data.batching`.

The flow, as in Hugging Face's `run_translation.py`:

    splits, counts = load_splits(config)                           # load_pairs + clean_pairs + split_pairs
    tokenized, token_counts = tokenize_splits(splits, tokenizer, config)  # cached on disk
    loader = make_loader(tokenized["train"], tokenizer, batch_size, shuffle=True, seed=seed, epoch=epoch)

Every pair is a row with two string columns, `en` and `fr`. Tokenization adds `input_ids` (task prefix +
English + eos) and `labels` (French + eos), unpadded; the loader (`study.data.batching.make_loader`) pads each
batch to its own longest row (labels with -100) and groups rows of similar length so that little of a
batch is padding.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset

from study.common import require_hub
from study.config import Config, StudyError

# Bump when cleaning, splitting or tokenization changes, so that old cache entries are not reused.
SPLITS = ("train", "validation", "test")
_SRC_NAMES = {"en", "eng", "english", "source", "src"}
_TGT_NAMES = {"fr", "fra", "fre", "french", "target", "tgt"}
_EXTENSIONS = ".tsv/.txt (English<TAB>French lines), .csv, .jsonl/.json or .parquet"


# ----------------------------------------------------------------------------------------------- loading


def _find_column(columns: list[str], names: set[str], given: str | None, side: str, where: str) -> str:
    """The column for one side: `given` if set, else the one column whose name says English (or French)."""
    if given is not None:
        if given not in columns:
            raise StudyError(f"{side} column {given!r} not found in {where}; it has columns {columns}")
        return given
    words = {c: set(re.split(r"[^a-z0-9]+", c.lower())) for c in columns}
    found = [c for c in columns if words[c] & names]
    exact = [c for c in found if c.lower() in names]
    if len(found) == 1 or len(exact) == 1:
        return found[0] if len(found) == 1 else exact[0]
    raise StudyError(f"could not find the {side} column in {where}; it has columns {columns}; "
                     "pass --src-col NAME --tgt-col NAME")


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _pairs_from_frame(df: pd.DataFrame, src_col: str | None, tgt_col: str | None, where: str) -> Dataset:
    """Pick the English and French columns of a table (a `translation` column of dicts is unpacked)."""
    if "translation" in df.columns and len(df) and isinstance(df["translation"].iloc[0], dict):
        nested = pd.json_normalize(df.pop("translation").tolist()).add_prefix("translation.")
        df = pd.concat([df.reset_index(drop=True), nested], axis=1)
    columns = [str(c) for c in df.columns]
    df.columns = columns
    src = _find_column(columns, _SRC_NAMES, src_col, "English", where)
    tgt = _find_column(columns, _TGT_NAMES, tgt_col, "French", where)
    if src == tgt:
        raise StudyError(f"English and French are the same column {src!r} in {where}; pass --src-col/--tgt-col")
    return Dataset.from_dict({"en": [_text(v) for v in df[src]], "fr": [_text(v) for v in df[tgt]]})


def _read_anki(path: Path) -> Dataset:
    """Tatoeba/Anki export: `English<TAB>French[<TAB>attribution]` per line, no header."""
    en, fr = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            en.append(fields[0])
            fr.append(fields[1] if len(fields) > 1 else "")  # no tab: cleaning drops it as empty
    if en and not any(fr):
        raise StudyError(f"no tab-separated pairs in {path}: expected English<TAB>French lines "
                         "(for other layouts use a .csv/.jsonl/.parquet file with --src-col/--tgt-col)")
    return Dataset.from_dict({"en": en, "fr": fr})


def _read_file(path: Path, src_col: str | None, tgt_col: str | None) -> Dataset:
    suffix = path.suffix.lower()
    where = str(path)
    if suffix in (".tsv", ".txt"):
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline().rstrip("\r\n").split("\t")
        if src_col is None and tgt_col is None:
            try:  # a header line such as "English<TAB>French"? Otherwise the headerless Anki format.
                _find_column(first, _SRC_NAMES, None, "English", where)
                _find_column(first, _TGT_NAMES, None, "French", where)
            except StudyError:
                return _read_anki(path)
        df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                         encoding="utf-8-sig")
    elif suffix == ".csv":
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    elif suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8-sig") as f:
            lines = suffix == ".jsonl" or not f.read(1024).lstrip().startswith("[")
        df = pd.read_json(path, lines=lines, dtype=False, encoding="utf-8")
    elif suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    else:
        raise StudyError(f"unknown file extension {suffix!r} for {path}; use {_EXTENSIONS}, "
                         "'sample' or 'hf:NAME[:CONFIG]'")
    return _pairs_from_frame(df, src_col, tgt_col, where)


def _load_hf(spec: str, src_col: str | None, tgt_col: str | None) -> Dataset:
    # Without network, load_dataset retries for most of a minute: find out first, in seconds.
    require_hub(spec, "dataset", "a local file instead, e.g. --data path/to/pairs.tsv (English<TAB>French per line)")
    name, _, config_name = spec[len("hf:"):].partition(":")
    try:
        loaded = load_dataset(name, config_name or None)
    except Exception as e:  # offline, unknown name, gated, ...: one line that says what to do
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise StudyError(f"could not load dataset {spec!r} from the Hugging Face Hub ({reason}); this machine may "
                         "be offline - pass a local file instead, e.g. --data path/to/pairs.tsv "
                         "(English<TAB>French per line)") from e
    ds = concatenate_datasets(list(loaded.values())) if isinstance(loaded, DatasetDict) else loaded
    ds = ds.flatten()  # translation: {"en": ..., "fr": ...} -> translation.en, translation.fr
    src = _find_column(ds.column_names, _SRC_NAMES, src_col, "English", spec)
    tgt = _find_column(ds.column_names, _TGT_NAMES, tgt_col, "French", spec)
    table = ds.select_columns([src, tgt]).with_format("arrow")[:]
    return Dataset.from_dict({"en": [_text(v) for v in table[src].to_pylist()],
                              "fr": [_text(v) for v in table[tgt].to_pylist()]})


def load_pairs(spec: str, src_col: str | None = None, tgt_col: str | None = None) -> Dataset:
    """Read English→French pairs as a Dataset with exactly the string columns `en` and `fr`.

    `spec` is "sample" (the bundled generated corpus), "hf:NAME[:CONFIG]" (every split of a hub
    dataset), or a path: a Tatoeba/Anki `.tsv`/`.txt` export (English<TAB>French[<TAB>attribution]),
    or a `.csv`/`.tsv`/`.jsonl`/`.parquet` table whose English/French columns are found by name
    (e.g. "English words/sentences") or given as `src_col`/`tgt_col`. Bad input raises StudyError.
    """
    if spec == "sample":
        from study.data.sample import corpus

        pairs = corpus.generate_pairs(30000, seed=0)
        return Dataset.from_dict({"en": [en for en, _ in pairs], "fr": [fr for _, fr in pairs]})
    if spec.startswith("hf:"):
        return _load_hf(spec, src_col, tgt_col)
    path = Path(spec).expanduser()
    if not path.exists():
        raise StudyError(f"data file not found: {spec} (pass --data path/to/pairs.tsv, or --data sample)")
    if path.is_dir():
        raise StudyError(f"--data {spec} is a directory; pass a file ({_EXTENSIONS})")
    try:
        return _read_file(path, src_col, tgt_col)
    except UnicodeDecodeError as e:
        raise StudyError(f"{spec} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset "
                         f"{e.start}); re-save it as UTF-8") from e
    except (ValueError, pa.ArrowException) as e:  # malformed CSV/JSON/Parquet
        reason = " ".join(str(e).split())[:300]
        raise StudyError(f"could not read {spec} as {path.suffix} ({type(e).__name__}: {reason})") from e


# ----------------------------------------------------------------------------------------------- cleaning


def normalize_text(text: str) -> str:
    """Unicode NFC, every run of whitespace (non-breaking spaces included) made one space, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def clean_pairs(ds: Dataset, config: Config) -> tuple[Dataset, dict[str, int]]:
    """Normalise both sides; drop empty pairs, exact duplicates and over-long pairs (or truncate them).

    A side longer than `config.max_chars` characters drops the pair, or is cut to that length when
    `config.overlong == "truncate"`. Returns the kept pairs and how many were dropped for each reason.
    """
    counts = dict.fromkeys(("read", "kept", "dropped_empty", "dropped_duplicate", "dropped_too_long",
                            "truncated"), 0)
    seen: set[tuple[str, str]] = set()
    kept_en, kept_fr = [], []
    columns = ds.select_columns(["en", "fr"]).with_format(None)[:]
    for en, fr in zip(columns["en"], columns["fr"], strict=True):
        counts["read"] += 1
        en, fr = normalize_text(en or ""), normalize_text(fr or "")
        if not en or not fr:
            counts["dropped_empty"] += 1
            continue
        if max(len(en), len(fr)) > config.max_chars:
            if config.overlong != "truncate":
                counts["dropped_too_long"] += 1
                continue
            en, fr = en[:config.max_chars].rstrip(), fr[:config.max_chars].rstrip()
            counts["truncated"] += 1
        if (en, fr) in seen:
            counts["dropped_duplicate"] += 1
            continue
        seen.add((en, fr))
        kept_en.append(en)
        kept_fr.append(fr)
    counts["kept"] = len(kept_en)
    if not kept_en:
        raise StudyError(f"no usable pairs in --data {config.data}: read {counts['read']}, dropped "
                         f"{counts['dropped_empty']} empty, {counts['dropped_too_long']} longer than "
                         f"--max-chars {config.max_chars}, {counts['dropped_duplicate']} duplicate")
    return Dataset.from_dict({"en": kept_en, "fr": kept_fr}), counts


# ---------------------------------------------------------------------------------------------- splitting


def split_pairs(ds: Dataset, config: Config) -> DatasetDict:
    """Split into train/validation/test by `config.split`, keeping every English sentence in one split.

    The distinct English sentences are shuffled with `config.data_seed` and cut where the cumulative
    number of pairs reaches each fraction, so split sizes follow the fractions in pairs, and no source
    sentence (with all its French variants) leaks from training into evaluation. Rows keep file order.
    The training split is whole: `max_train_pairs` is applied by `study.data.prepared.prepare_text`, after the
    tokenizer and the upstream have seen all of it.
    """
    codes, uniques = pd.factorize(pd.Series(ds["en"][:], dtype=object))  # group id per pair
    sizes = np.bincount(codes, minlength=len(uniques))
    rng = np.random.default_rng(config.data_seed)
    order = rng.permutation(len(uniques))
    starts = (np.cumsum(sizes[order]) - sizes[order]) / len(codes)  # fraction of pairs before each group
    group_split = np.empty(len(uniques), dtype=np.int64)
    group_split[order] = np.searchsorted(np.cumsum(config.split[:2]), starts, side="right")
    pair_split = group_split[codes]
    indices = {name: np.flatnonzero(pair_split == i) for i, name in enumerate(SPLITS)}
    for name in ("validation", "test"):
        if len(indices[name]) == 0:
            raise StudyError(f"the {name} split is empty: {len(uniques)} distinct English sentences are too few "
                             f"for split {tuple(config.split)}; use more data or larger fractions")
    return DatasetDict({name: ds.select(idx) for name, idx in indices.items()})


def subset_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """The rows `cap_pairs` keeps of `n`: a seeded random `limit` of them (all when there are fewer), in order."""
    if limit is None or n <= limit:
        return list(range(n))
    return np.sort(np.random.default_rng([seed, 1]).choice(n, size=limit, replace=False)).tolist()


def nested_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """The rows a `nested` cap keeps of `n`: the first `limit` of one seeded order of all n rows, in file order.
    The order does not depend on `limit`, so a smaller limit's rows are among a larger's (the data sweep's
    sizes); `subset_indices` draws each limit on its own (numpy's `choice` switches algorithm with the size),
    and its 500 rows need not be among its 2,000."""
    if limit is None or n <= limit:
        return list(range(n))
    return np.sort(np.random.default_rng([seed, 2]).permutation(n)[:limit]).tolist()


def cap_pairs(ds: Dataset, limit: int | None, seed: int, nested: bool = False) -> Dataset:
    """A seeded random subset of `limit` pairs (all of them when there are fewer), rows kept in order; `nested`:
    the subset `nested_indices` keeps (Config.train_subset)."""
    if limit is None or len(ds) <= limit:
        return ds
    return ds.select((nested_indices if nested else subset_indices)(len(ds), limit, seed))


def load_splits(config: Config) -> tuple[DatasetDict, dict[str, int]]:
    """load_pairs + clean_pairs + split_pairs; prints one summary line and returns the counts."""
    raw = load_pairs(config.data, config.src_col, config.tgt_col)
    cleaned, counts = clean_pairs(raw, config)
    splits = split_pairs(cleaned, config)
    counts.update({name: len(splits[name]) for name in SPLITS})
    print(f"data {config.data}: read {counts['read']} pairs, kept {counts['kept']} (dropped "
          f"{counts['dropped_empty']} empty, {counts['dropped_duplicate']} duplicate, "
          f"{counts['dropped_too_long']} over {config.max_chars} chars; {counts['truncated']} truncated); "
          f"split by English sentence: train {counts['train']}, validation {counts['validation']}, "
          f"test {counts['test']}", flush=True)
    return splits, counts
