"""The prepared splits every trial of a study shares: tokenized once in the driver, shipped to trials.

    text = prepare_text(config)          # load + clean + split, the tokenizer, the training cap
    data = tokenize_text(text, config)   # PreparedData: tokenized train / validation / test
    data = prepare_data(config)          # both at once

Preparing data never pretrains a model: the pretrained tiny upstream is added by
`study.training.pretraining.prepare_data_with_upstream`, which says so in its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset, DatasetDict
from transformers import PreTrainedTokenizerBase

from study.config import Config
from study.data.encoding import tokenize_splits
from study.data.pairs import cap_pairs, load_splits
from study.data.tokenizer import load_tokenizer


@dataclass
class PreparedText:
    """The splits as text (train capped by `max_train_pairs`), the whole training split, the tokenizer."""

    splits: DatasetDict
    whole_train: Dataset  # what the tokenizer and the upstream's pretraining learn from
    tokenizer: PreTrainedTokenizerBase
    counts: dict


@dataclass
class PreparedData:
    """Tokenized splits, their tokenizer and (for `tiny`) the pretrained upstream's weights, prepared once
    in the driver and shared by every trial through Ray's object store."""

    tokenizer: PreTrainedTokenizerBase
    train: Dataset
    validation: Dataset  # what every epoch is scored on (capped by max_eval_pairs)
    test: Dataset | None  # scored once, on each regime's best trial, after its search; trials get None
    counts: dict = field(default_factory=dict)
    upstream: dict | None = None  # state_dict of the pretrained tiny upstream, when a regime needs one
    upstream_dir: str | None = None  # where that upstream is cached (a normal Hugging Face model directory)

    def for_trials(self) -> PreparedData:
        """The same data without the test split: a trial can never score (or select on) test."""
        return PreparedData(self.tokenizer, self.train, self.validation, None, self.counts, self.upstream,
                            self.upstream_dir)


def _in_memory(ds: Dataset) -> Dataset:
    # Memory-mapped datasets pickle as file paths, which a trial on another node cannot open:
    # materialise them so `tune.with_parameters` ships the data itself through the object store.
    return Dataset.from_dict(ds.to_dict(), features=ds.features)


def prepare_text(config: Config) -> PreparedText:
    """Load, clean and split the pairs; get the tokenizer.

    The tokenizer (for `tiny`) and the pretrained upstream learn from the *whole* training split:
    `max_train_pairs` limits the labelled pairs a quick study trains on, not what the vocabulary or
    pre-training see. Validation and test text never reach either.
    """
    splits, counts = load_splits(config)
    whole_train = splits["train"]
    tokenizer = load_tokenizer(config, list(whole_train["en"]), list(whole_train["fr"]))
    splits["train"] = cap_pairs(whole_train, config.max_train_pairs, config.data_seed,
                                nested=config.train_subset == "nested")
    if len(splits["train"]) < len(whole_train):
        print(f"training on {len(splits['train'])} of {len(whole_train)} training pairs (max_train_pairs, "
              f"{config.train_subset})", flush=True)
    counts["train"] = len(splits["train"])
    return PreparedText(splits, whole_train, tokenizer, counts)


def tokenize_text(text: PreparedText, config: Config) -> PreparedData:
    """Tokenize the splits (cached) and cap validation and test to their seeded subsets."""
    tokenized, token_counts = tokenize_splits(text.splits, text.tokenizer, config)
    # Seeded random subsets, not the first rows: files such as Tatoeba's are sorted by length.
    validation = cap_pairs(tokenized["validation"], config.max_eval_pairs, config.data_seed)
    test = cap_pairs(tokenized["test"], config.max_test_pairs, config.data_seed)
    return PreparedData(text.tokenizer, _in_memory(tokenized["train"]), _in_memory(validation), _in_memory(test),
                        {**text.counts, **token_counts})


def prepare_data(config: Config) -> PreparedData:
    """`tokenize_text(prepare_text(config), config)`: the data of a study, without any upstream."""
    return tokenize_text(prepare_text(config), config)
