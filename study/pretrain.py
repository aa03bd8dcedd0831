"""Build (or find in the cache) the tiny model's pretrained upstream by hand.

    python -m study.pretrain                   # pretrain (or reuse) the upstream of `--data sample`
    python -m study.pretrain --steps 300 --out /tmp/upstream
    python -m study.pretrain --optimizer adamw --lr 5e-4 --out /tmp/up-adamw   # the scale-blind baseline

The pretraining itself (span corruption, Adafactor, packing, the cache): `study.training.pretraining`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from study.cli import ArgumentParser, run_cli
from study.config import Config, add_config_flags, config_from_flags
from study.data.prepared import prepare_text
from study.training.pretraining import (
    OPTIMIZERS,
    PretrainSettings,
    check_settings,
    ensure_upstream,
    monolingual_corpus,
    pretrain,
)

# The flags that change the upstream (max_train_pairs does not, but is accepted to match a study's command line)
CONFIG_FLAGS = ["data", "src_col", "tgt_col", "max_chars", "overlong", "split", "max_train_pairs", "data_seed",
                "seed", "device", "torch_threads", "tiny_vocab_size", "tiny_d_model", "tiny_layers", "tiny_heads",
                "tiny_d_ff", "cache_dir"]


def build_parser() -> ArgumentParser:
    defaults = PretrainSettings(steps=Config().pretrain_steps)
    parser = ArgumentParser(prog="python -m study.pretrain", description=__doc__.split("\n\n")[0])
    # dests carry a pt_ prefix: Config has its own batch_size and lr, which config_from_flags would pick up
    for flag, kind, what in [("steps", int, "optimizer steps"), ("batch_size", int, "examples per step"),
                             ("lr", float, "peak learning rate; Adafactor's is relative to each weight's scale "
                                           "(use about 5e-4 with --optimizer adamw)"),
                             ("noise_density", float, "fraction of tokens dropped"),
                             ("mean_span_length", float, "mean length of a dropped span"),
                             ("pack_tokens", int, "pack sentences into examples of up to this many tokens (0: no)"),
                             ("dropout_rate", float, "dropout while pretraining (the saved model fine-tunes with 0.1)"),
                             ("optimizer", str, f"one of {', '.join(OPTIMIZERS)}")]:
        parser.add_argument("--" + flag.replace("_", "-"), dest="pt_" + flag, type=kind, metavar=flag.upper(),
                            default=getattr(defaults, flag), help=f"{what} (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="pretrain into this new directory, not the cache")
    add_config_flags(parser, CONFIG_FLAGS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        config = config_from_flags(args, Config(model="tiny"))
        settings = dataclasses.replace(PretrainSettings(steps=config.pretrain_steps),
                                       **{k[3:]: v for k, v in vars(args).items() if k.startswith("pt_")})
        check_settings(settings)
        # The study's own preparation, so the tokenizer and the corpus, hence the cache key, are the study's:
        # both see the whole training split, never validation or test.
        text = prepare_text(config)
        en, fr = list(text.whole_train["en"]), list(text.whole_train["fr"])
        if args.out is not None:
            path = pretrain(config, text.tokenizer, monolingual_corpus(en, fr, config.seed), args.out, settings)
        else:
            path = ensure_upstream(config, text.tokenizer, en, fr, settings)
        print(path)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
