"""The training regimes: the registry. They differ only in how the model is built and which parameters train.

| regime            | starts from        | trains                                                      |
| ----------------- | ------------------ | ----------------------------------------------------------- |
| upstream          | pretrained weights | nothing: evaluated once, zero-shot                          |
| scratch           | random init        | every parameter                                             |
| decoder           | pretrained weights | the decoder; the encoder is frozen                          |
| full              | pretrained weights | every parameter                                             |
| lora              | pretrained weights | only LoRA adapters (peft) on the attention projections      |
| encoder           | pretrained weights | the encoder's blocks; decoder, embedding and head frozen    |
| frozen-embeddings | pretrained weights | everything but the shared embedding and the output head     |

`--regime all` runs the first four (the study's original question), `all+extra` every one. A regime is
one `Regime` entry here plus `search_spaces/<regime>.yaml`: its Tune trainable, report rows and plots follow.

T5 ties one token embedding (`shared`) to the encoder's input, the decoder's input and the output
head, so "freeze the encoder, train the decoder and lm_head" (the original notebook's intent) is
impossible as stated. `Config.decoder_embedding` makes the choice explicit:
- `frozen` (default): `shared` is frozen with the encoder, so the encoder is exactly the pretrained one;
- `trained`: `shared` trains, which also moves the encoder's input embedding;
- `untied`: the decoder gets its own trainable copy of `shared` (input embedding and output head), the
  encoder keeps the frozen original — the honest version of "decoder + lm_head".

T5 v1.1 (`google/t5-v1_1-*`) has an output head of its own (untied; `weights.has_own_output_head`), so there
`decoder` trains the decoder and that head under every choice (`untied` adds a copy of `shared` as the
decoder's input only, the pretrained head stays), `encoder` keeps the head frozen with the decoder, and
`frozen-embeddings` freezes both matrices; tests/test_regimes_v11.py counts each regime's parameters.
"""

from __future__ import annotations

import copy
import logging
import warnings
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
        if model.lm_head.weight is model.shared.weight:  # original T5: the head was `shared` too, so it is the copy
            model.lm_head.weight = own.weight  # the decoder's input and output embeddings stay tied to each other
        # T5 v1.1's lm_head is already its own (pretrained) matrix: it stays, and trains with the decoder


def _freeze_embeddings(model: T5ForConditionalGeneration) -> None:
    # The shared token embedding and the output head, however a model ties them: t5-small ties all four
    # to one tensor, t5 v1.1 unties lm_head; freezing an already frozen tensor twice changes nothing.
    for module in (model.shared, model.encoder.embed_tokens, model.decoder.embed_tokens, model.lm_head):
        module.requires_grad_(False)


def _train_encoder(model: T5ForConditionalGeneration, config: Config) -> None:
    # The mirror of `decoder`. `shared` is the decoder's input embedding and (tied) output head too, so
    # training it would change the decoder: it stays frozen, and only the encoder's blocks and final norm train.
    model.requires_grad_(False)
    model.encoder.requires_grad_(True)
    _freeze_embeddings(model)


def _train_all_but_embeddings(model: T5ForConditionalGeneration, config: Config) -> None:
    model.requires_grad_(True)
    _freeze_embeddings(model)


def _add_lora(model: T5ForConditionalGeneration, config: Config) -> nn.Module:
    """Low-rank adapters (peft) on the attention projections of every encoder and decoder attention
    (self and cross); peft leaves only the adapters trainable."""
    from peft import LoraConfig, get_peft_model  # imported here: only this regime needs peft

    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules=config.lora_targets.split(","), task_type="SEQ_2_SEQ_LM")
    with warnings.catch_warnings():  # peft 0.21 calls a transformers-5 deprecated property; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


def _merge_lora(model: nn.Module) -> T5ForConditionalGeneration:
    # Adapters folded into the weights they adapt: a plain T5 that loads without peft. On a copy, because
    # merge_and_unload rewrites the model it is called on and the caller may keep evaluating it.
    return copy.deepcopy(model).merge_and_unload()


def _unchanged(model: nn.Module) -> nn.Module:
    return model


@dataclass(frozen=True)
class Regime:
    name: str
    pretrained: bool  # start from pretrained weights (True) or a random init of the same config
    trains: bool  # False: evaluation only
    set_trainable: Callable[[T5ForConditionalGeneration, Config], None]
    summary: str
    # Returns the model to train in place of the T5 (e.g. wrapped with adapters); None: the T5 itself.
    adapt: Callable[[T5ForConditionalGeneration, Config], nn.Module] | None = None
    # The plain T5ForConditionalGeneration to save for others to load (adapters merged in).
    export_model: Callable[[nn.Module], T5ForConditionalGeneration] = _unchanged
    # One of the four regimes of the study's original question, run by `--regime all`; the others run
    # with `all+extra` or by name.
    in_all: bool = True


REGIMES: dict[str, Regime] = {
    r.name: r
    for r in (
        Regime("upstream", True, False, _train_none, "pretrained model as it is, evaluated zero-shot"),
        Regime("scratch", False, True, _train_all, "same architecture, random init, every parameter trained"),
        Regime("decoder", True, True, _train_decoder, "pretrained, encoder frozen, decoder fine-tuned"),
        Regime("full", True, True, _train_all, "pretrained, every parameter fine-tuned"),
        Regime("lora", True, True, _train_none, "pretrained and frozen, low-rank adapters on attention trained",
               adapt=_add_lora, export_model=_merge_lora, in_all=False),
        Regime("encoder", True, True, _train_encoder, "pretrained, decoder and embeddings frozen, encoder fine-tuned",
               in_all=False),
        Regime("frozen-embeddings", True, True, _train_all_but_embeddings,
               "pretrained, everything but the shared embedding and output head fine-tuned", in_all=False),
    )
}
ALL = "all"  # the original four
ALL_EXTRA = "all+extra"  # every registered regime


def register(regime: Regime) -> Regime:
    """Add `regime` to the registry (a regime defined in a notebook, a plugin or a test); Ray workers get it
    through `ensure_registered`. Re-registering the same definition is a no-op; another definition under a
    taken name is refused."""
    known = REGIMES.setdefault(regime.name, regime)
    if known != regime:
        raise StudyError(f"a different regime is already registered as {regime.name!r}; pick another name")
    return regime


def ensure_registered(regime: Regime) -> None:
    """Register `regime` in this process unless a regime of its name already is: a Ray worker (a trial, a
    test-scoring task) imports the registry afresh and knows only the built-in regimes, so whatever runs
    there carries its regime's definition and calls this first."""
    REGIMES.setdefault(regime.name, regime)


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
                ) -> tuple[nn.Module, dict[str, int]]:
    """The model of `config.regime`: weights per the regime, parameters frozen per the regime; a T5, or
    the regime's wrapper around one (`Regime.adapt`; `Regime.export_model` gives back a plain T5).

    Seeded with `config.seed`, so two builds of `scratch` are identical. `upstream` is the pretrained
    tiny model's state_dict (see `study.training.pretraining`); hub and local models load their own weights.
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
    if regime.adapt is not None:
        model = regime.adapt(model, config)
    counts = parameter_counts(model)
    log.info("%s: %s trainable of %s parameters (%s)", regime.name, f"{counts['trainable_params']:,}",
             f"{counts['total_params']:,}", regime.summary)
    return model, counts


def parse_regimes(text: str) -> list[str]:
    """A comma list of regime names, `all` (the original four) and `all+extra` (every registered regime)
    among them, in the order given (each group in the registry's order), without repeats."""
    groups = {ALL: [n for n, r in REGIMES.items() if r.in_all], ALL_EXTRA: list(REGIMES)}
    items = [r.strip() for r in text.split(",") if r.strip()]
    names = [n for item in items for n in groups.get(item, [item])]
    unknown = [r for r in names if r not in REGIMES]
    if unknown or not names:
        raise StudyError(f"unknown regime(s) {unknown or [text]}; use {ALL}, {ALL_EXTRA} or a comma list of "
                         f"{','.join(REGIMES)}")
    return list(dict.fromkeys(names))
