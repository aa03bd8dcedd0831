"""Model weights: the architecture of a model spec, a random init of it, or its pretrained weights.

A spec is a hub id (`t5-small`), a local model directory, or `tiny` — a T5 of about 2 M parameters built
offline by this project (its tokenizer: `study.data.tokenizer`). Tiny's *pretrained* weights come from
`study.training.pretraining` (T5's span-corruption objective on monolingual text); a random initialisation
is never passed off as one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from study.common import not_loadable
from study.config import Config, StudyError
from study.data.tokenizer import is_tiny


def tiny_config(config: Config, tokenizer: PreTrainedTokenizerBase) -> T5Config:
    """The tiny T5: t5-small's layout scaled down (d_model 128, 3+3 layers) to train in minutes on 2 cores."""
    return T5Config(
        vocab_size=len(tokenizer),
        d_model=config.tiny_d_model,
        d_kv=config.tiny_d_model // config.tiny_heads,
        d_ff=config.tiny_d_ff,
        num_layers=config.tiny_layers,
        num_decoder_layers=config.tiny_layers,
        num_heads=config.tiny_heads,
        dropout_rate=0.1,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def model_config(config: Config, tokenizer: PreTrainedTokenizerBase) -> T5Config:
    """The architecture of `config.model`, without weights."""
    if is_tiny(config.model):
        return tiny_config(config, tokenizer)
    try:
        return AutoConfig.from_pretrained(config.model)
    except Exception as err:  # noqa: BLE001
        raise StudyError(not_loadable(config.model, "configuration", err)) from err


def has_own_output_head(model_config: T5Config) -> bool:
    """Whether the architecture's output head is a matrix of its own rather than the shared token embedding:
    T5 v1.1 has "no parameter sharing between embedding and classifier layer" (its model card), the original
    T5 ties them. transformers 5 keeps a config's `tie_word_embeddings: false` as `scale_decoder_outputs=False`
    (and sets tie_word_embeddings to True); 4.x keeps tie_word_embeddings as it is."""
    return (getattr(model_config, "scale_decoder_outputs", True) is False
            or getattr(model_config, "tie_word_embeddings", True) is False)


def random_model(config: Config, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    """The architecture of `config.model` with a fresh random initialisation (seeded by the caller)."""
    model = T5ForConditionalGeneration(model_config(config, tokenizer))
    if has_own_output_head(model.config) and model.lm_head.weight is model.shared.weight:
        # transformers 5 ties lm_head to `shared` in __init__ whatever the config says (it unties only a loaded
        # checkpoint whose two matrices differ), so a random T5 v1.1 would lose its head: give it one of its
        # own, initialised as T5's _init_weights initialises an untied head (normal, std initializer_factor).
        head = torch.empty_like(model.shared.weight)
        nn.init.normal_(head, mean=0.0, std=model.config.initializer_factor)
        model.lm_head.weight = nn.Parameter(head)
        getattr(model, "all_tied_weights_keys", {}).pop("lm_head.weight", None)  # no later tie_weights() re-ties it
    return model


def pretrained_model(config: Config, tokenizer: PreTrainedTokenizerBase,
                     upstream: dict | None = None) -> T5ForConditionalGeneration:
    """Pretrained weights of `config.model`: the hub or a local directory, or the offline tiny upstream.

    For `tiny`, `upstream` is the state_dict that `study.training.pretraining` produced (prepared in the driver and
    shipped to trials); without it this fails loudly — a random init is never passed off as pretrained.
    """
    if is_tiny(config.model):
        if upstream is None:
            raise StudyError(f"regime {config.regime!r} needs a pretrained tiny upstream and none was prepared: "
                             "run `python -m study.pretrain` (studies and trials do it automatically)")
        model = T5ForConditionalGeneration(tiny_config(config, tokenizer))
        model.load_state_dict(upstream)
        return model
    check_pretrained_weights(config.model, config.regime)
    try:
        return T5ForConditionalGeneration.from_pretrained(config.model)
    except Exception as err:  # noqa: BLE001
        raise StudyError(not_loadable(config.model, "pretrained model", err)) from err


# The files `from_pretrained` reads a PyTorch model's weights from (whole, or sharded behind an index).
WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)


def check_pretrained_weights(spec: str, regime: str) -> None:
    """Fail with one line if `spec` is a local model directory without weights, e.g. a configuration and
    tokenizer alone: a random init of it is fine (`scratch`), but a pretrained regime would otherwise only fail
    inside its trials, after the study had started. Hub ids and `tiny` are not checked here (their weights
    come from the hub or from this project's own pretraining)."""
    directory = Path(spec).expanduser()
    if is_tiny(spec) or not directory.is_dir() or any((directory / name).is_file() for name in WEIGHT_FILES):
        return
    raise StudyError(f"regime {regime!r} starts from pretrained weights, and {directory} has none "
                     f"(no {' or '.join(WEIGHT_FILES)}); put the model's weights there, or run only "
                     f"--regime scratch with it (a random init of its configuration)")


def load_state_dict(model_dir: str | Path) -> dict:
    """The weights of a saved model directory, as a plain state_dict (CPU tensors)."""
    return T5ForConditionalGeneration.from_pretrained(str(model_dir)).state_dict()
