"""Shared fixtures: an offline T5 tokenizer trained in seconds, and paths to the optional `../shared` material."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# Ray (>= 2.48) no longer hides the GPUs from a trial that asked for none; the tests' Ray trials ask for none
# (`--gpus-per-trial 0`) and must run on the CPU on every machine, GPU or not, as they do on a CPU-only one.
# Set before any test starts Ray, in-process or as a subprocess, so every raylet and worker inherits it.
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_T5 = SHARED / "t5-small"
SHARED_PAIRS = SHARED / "data" / "eng-fra.tsv"

EN_WORDS = ("the a my your this that cat dog house car tree book child woman man friend teacher city river "
       "is was will be has have sees likes wants eats reads finds big small red blue green old new happy "
       "quickly today yesterday here there very not and with in on under near I you we they he she").split()
FR_WORDS = ("le la les un une mon ma ton ta ce cette chat chien maison voiture arbre livre enfant femme homme "
       "ami professeur ville rivière est était sera a ont voit aime veut mange lit trouve grand petit rouge "
       "bleu vert vieux nouveau heureux été très café élève où déjà même à ça garçon fenêtre forêt "
       "aujourd'hui hier ici là ne pas et avec dans sur sous près je tu nous ils il elle").split()


def tiny_sentences(n: int, seed: int = 0) -> list[str]:
    """Short English and French sentences (with accents and punctuation) from a fixed word list."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = EN_WORDS if i % 2 else FR_WORDS
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(2, 12)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", " ?", " !", "."])
        out.append("translate English to French: " + sentence if i % 4 == 1 else sentence)
    return out


def build_t5_tokenizer(directory: Path, sentences: list[str], vocab_size: int = 300):
    """Train a SentencePiece unigram model with T5's ids (pad 0, eos 1, unk 2, no bos) and load it as T5Tokenizer.

    transformers 5 converts `spiece.model` found in a directory into its fast (tokenizers) T5Tokenizer
    and appends the 100 `<extra_id_N>` sentinels, as for t5-small.
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(directory / "spiece"), vocab_size=vocab_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        hard_vocab_limit=False, minloglevel=2,
    )
    return T5Tokenizer.from_pretrained(str(directory))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Code under test may set torch's thread count (a benchmark's --threads, a trial's torch_threads):
    later tests, whatever their order, start from the count this process began with."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def spm_tokenizer(tmp_path_factory):
    """A T5Tokenizer over a ~300-piece SentencePiece model trained offline on generated English/French."""
    return build_t5_tokenizer(tmp_path_factory.mktemp("spm"), tiny_sentences(3000))


@pytest.fixture(scope="session")
def t5_small_tokenizer():
    """The real t5-small tokenizer from ../shared; tests using it skip when it is absent."""
    if not (SHARED_T5 / "spiece.model").exists():
        pytest.skip(f"{SHARED_T5} not present")
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(str(SHARED_T5))
