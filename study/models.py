"""Model specs: a hub id (`t5-small`), a local model directory, or `tiny` — built offline by this project.

`tiny` is a T5 of about 2 M parameters whose SentencePiece tokenizer is trained on the training split
(both languages, with T5's special tokens and the 100 `<extra_id_N>` sentinels), so the whole study
runs on a laptop with no model hub. Its *pretrained* weights come from `study.pretrain` (T5's
span-corruption objective on monolingual text); a random initialisation is never passed off as one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from transformers import (
    AddedToken,
    AutoConfig,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
    T5Tokenizer,
)

from study.config import Config, StudyError

log = logging.getLogger(__name__)

TINY = "tiny"


def is_tiny(spec: str) -> bool:
    return spec == TINY


def _hash_texts(texts_en: list[str], texts_fr: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts_en + ["\x00"] + texts_fr:
        h.update(text.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _atomic_dir(final: Path) -> Path:
    """A temporary directory beside `final`, to be renamed onto it once complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def _publish(tmp: Path, final: Path) -> None:
    try:
        os.replace(tmp, final)
    except OSError:  # another process published the same entry first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


SEED_WORDS_VERSION = "1"  # part of the tokenizer cache key: bump when seed_words changes


def seed_words(texts: list[str]) -> list[str]:
    """Every distinct word once more, followed by ".": extra training lines that let SentencePiece keep
    whole words as pieces.

    The unigram trainer draws its candidate pieces from substrings found at least twice among the
    corpus's distinct *words* (each counted once, however frequent). On a natural corpus nearly every word
    is part of a longer one ("dans" of "dansant"); on the bundled grammar's 1,400 word types many are
    not, so "dans", "did", "not", "will" could never become pieces and were spelled "▁d an s", "▁ di d":
    10.3 tokens a sentence, where whole words need 8.0. One extra occurrence each adds no character and
    next to no frequency, so the trainer's statistics are otherwise those of the corpus.
    """
    return [word + "." for word in sorted({w for text in texts for w in text.split()})]


def train_tiny_tokenizer(en: list[str], fr: list[str], config: Config) -> PreTrainedTokenizerBase:
    """Train (or load from the cache) a SentencePiece unigram tokenizer on both sides of the training split.

    The ids follow T5's convention — pad 0, eos 1, unk 2, no bos — and transformers' T5Tokenizer adds
    the 100 sentinels at the top of the vocabulary, exactly like t5-small's `spiece.model`.

    The task prefix becomes one token of its own, added after the sentinels. The training text never
    contains it, so otherwise it is spelled piece by piece, with `<unk>` for "F" and ":" (22 tokens on the
    bundled corpus, more than the sentence): noise every model must first learn to ignore. It cost scratch
    training over two thirds of its validation BLEU after 3 epochs on 8,000 pairs (11.6 against 38.3).
    """
    import sentencepiece as spm

    prefix = config.prefix.strip()
    key = f"{_hash_texts(en, fr)}-v{config.tiny_vocab_size}-s{SEED_WORDS_VERSION}" + (
        f"-p{hashlib.sha256(prefix.encode()).hexdigest()[:8]}" if prefix else "")
    final = Path(config.cache_dir) / "tokenizers" / key
    if not (final / "tokenizer_config.json").exists():
        tmp = _atomic_dir(final)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(en + fr + seed_words(en + fr)),
                model_prefix=str(tmp / "spiece"),
                vocab_size=config.tiny_vocab_size,
                hard_vocab_limit=False,  # a small grammar may not have that many pieces
                model_type="unigram",
                character_coverage=1.0,  # keep every accented letter of French
                pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
                num_threads=1, minloglevel=2,
            )
            (tmp / "spiece.vocab").unlink(missing_ok=True)
            tokenizer = T5Tokenizer.from_pretrained(str(tmp))
            if prefix:  # matched in the raw text, before SentencePiece splits it at spaces
                tokenizer.add_tokens([AddedToken(prefix, normalized=False)])
            tokenizer.save_pretrained(str(tmp))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _publish(tmp, final)
        log.info("trained tiny tokenizer: %s", final)
    return T5Tokenizer.from_pretrained(str(final))


def load_tokenizer(config: Config, train_en: list[str], train_fr: list[str]) -> PreTrainedTokenizerBase:
    """The tokenizer of `config.model`; for `tiny`, one trained on the given training texts."""
    if is_tiny(config.model):
        return train_tiny_tokenizer(train_en, train_fr, config)
    try:
        return AutoTokenizer.from_pretrained(config.model)
    except Exception as err:  # noqa: BLE001 - hub, network and format errors all mean the same to a user
        raise StudyError(_not_loadable(config.model, "tokenizer", err)) from err


def _not_loadable(spec: str, what: str, err: Exception) -> str:
    if Path(spec).exists():
        return f"cannot load a {what} from {spec}: {type(err).__name__}: {str(err).splitlines()[0]}"
    return (
        f"cannot load the {what} of {spec!r}: it is not a local directory and the model hub could not provide it "
        f"(this machine may be offline); pass --model tiny or a local model directory"
    )


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
        raise StudyError(_not_loadable(config.model, "configuration", err)) from err


def random_model(config: Config, tokenizer: PreTrainedTokenizerBase) -> T5ForConditionalGeneration:
    """The architecture of `config.model` with a fresh random initialisation (seeded by the caller)."""
    return T5ForConditionalGeneration(model_config(config, tokenizer))


def pretrained_model(config: Config, tokenizer: PreTrainedTokenizerBase,
                     upstream: dict | None = None) -> T5ForConditionalGeneration:
    """Pretrained weights of `config.model`: the hub or a local directory, or the offline tiny upstream.

    For `tiny`, `upstream` is the state_dict that `study.pretrain` produced (prepared in the driver and
    shipped to trials); without it this fails loudly — a random init is never passed off as pretrained.
    """
    if is_tiny(config.model):
        if upstream is None:
            raise StudyError(f"regime {config.regime!r} needs a pretrained tiny upstream and none was prepared: "
                             "run `python -m study.pretrain` (studies and trials do it automatically)")
        model = T5ForConditionalGeneration(tiny_config(config, tokenizer))
        model.load_state_dict(upstream)
        return model
    try:
        return T5ForConditionalGeneration.from_pretrained(config.model)
    except Exception as err:  # noqa: BLE001
        raise StudyError(_not_loadable(config.model, "pretrained model", err)) from err


def load_state_dict(model_dir: str | Path) -> dict:
    """The weights of a saved model directory, as a plain state_dict (CPU tensors)."""
    return T5ForConditionalGeneration.from_pretrained(str(model_dir)).state_dict()
