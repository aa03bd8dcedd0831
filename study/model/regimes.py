"""The four training regimes. They differ only in how the model is built and which parameters train.

| regime   | starts from        | trains                                   |
| -------- | ------------------ | ---------------------------------------- |
| upstream | pretrained weights | nothing: evaluated once, zero-shot       |
| scratch  | random init        | every parameter                          |
| decoder  | pretrained weights | the decoder; the encoder is frozen       |
| full     | pretrained weights | every parameter                          |

T5 ties one token embedding (`shared`) to the encoder's input, the decoder's input and the output
head, so "freeze the encoder, train the decoder and lm_head" (the original notebook's intent) is
impossible as stated. `Config.decoder_embedding` makes the choice explicit:
- `frozen` (default): `shared` is frozen with the encoder, so the encoder is exactly the pretrained one;
- `trained`: `shared` trains, which also moves the encoder's input embedding;
- `untied`: the decoder gets its own trainable copy of `shared` (input embedding and output head), the
  encoder keeps the frozen original — the honest version of "decoder + lm_head".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, T5ForConditionalGeneration

from study.config import Config, StudyError
from study.model import weights

log = logging.getLogger(__name__)


def _train_all(model: T5ForConditionalGeneration, config: Config) -> None:
    model.requires_grad_(True)


def _train_none(model: T5ForConditionalGeneration, config: Config) -> None:
    model.requires_grad_(False)


def _train_decoder(model: T5ForConditionalGeneration, config: Config) -> None:
    model.requires_grad_(True)
    model.encoder.requires_grad_(False)  # also freezes `shared`: the encoder's embed_tokens *is* shared
    if config.decoder_embedding == "trained":
        model.shared.requires_grad_(True)
    elif config.decoder_embedding == "untied":
        own = nn.Embedding.from_pretrained(model.shared.weight.detach().clone(), freeze=False)
        model.decoder.embed_tokens = own
        model.lm_head.weight = own.weight  # the decoder's input and output embeddings stay tied to each other


@dataclass(frozen=True)
class Regime:
    name: str
    pretrained: bool  # start from pretrained weights (True) or a random init of the same config
    trains: bool  # False: evaluation only
    set_trainable: Callable[[T5ForConditionalGeneration, Config], None]
    summary: str


REGIMES: dict[str, Regime] = {
    r.name: r
    for r in (
        Regime("upstream", True, False, _train_none, "pretrained model as it is, evaluated zero-shot"),
        Regime("scratch", False, True, _train_all, "same architecture, random init, every parameter trained"),
        Regime("decoder", True, True, _train_decoder, "pretrained, encoder frozen, decoder fine-tuned"),
        Regime("full", True, True, _train_all, "pretrained, every parameter fine-tuned"),
    )
}


def get_regime(name: str) -> Regime:
    if name not in REGIMES:
        raise StudyError(f"unknown regime {name!r}; choose from {', '.join(REGIMES)}")
    return REGIMES[name]


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameters, each shared tensor counted once (as `model.parameters()` does)."""
    params = list(model.parameters())
    return {
        "total_params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
    }


def build_model(config: Config, tokenizer: PreTrainedTokenizerBase, upstream: dict | None = None
                ) -> tuple[T5ForConditionalGeneration, dict[str, int]]:
    """The model of `config.regime`: weights per the regime, parameters frozen per the regime.

    Seeded with `config.seed`, so two builds of `scratch` are identical. `upstream` is the pretrained
    tiny model's state_dict (see `study.training.upstream`); hub and local models load their own weights.
    """
    regime = get_regime(config.regime)
    torch.manual_seed(config.seed)
    if regime.pretrained:
        model = weights.pretrained_model(config, tokenizer, upstream)
    else:
        model = weights.random_model(config, tokenizer)
    if model.config.vocab_size < len(tokenizer):
        raise StudyError(
            f"{config.model}'s vocabulary ({model.config.vocab_size}) is smaller than its tokenizer's ({len(tokenizer)})"
        )
    regime.set_trainable(model, config)
    counts = parameter_counts(model)
    log.info("%s: %s trainable of %s parameters (%s)", regime.name, f"{counts['trainable_params']:,}",
             f"{counts['total_params']:,}", regime.summary)
    return model, counts


def parse_regimes(text: str) -> list[str]:
    """`all` (every regime, in the registry's order) or a comma list of regime names, without repeats."""
    names = list(REGIMES) if text == "all" else [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in names if r not in REGIMES]
    if unknown or not names:
        raise StudyError(f"unknown regime(s) {unknown or [text]}; use all or a comma list of {','.join(REGIMES)}")
    return list(dict.fromkeys(names))
