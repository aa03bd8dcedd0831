"""T5's span-corruption objective (Raffel et al. 2020, section 3.1.4), in numpy, for `study.pretrain`.

Drop ~15% of a sequence's tokens in spans of mean length 3, put sentinel `<extra_id_k>` where the k-th
span was, and make the target the sentinels each followed by the tokens they replaced:

    "Thank you for inviting me to your party last week"
    input:  "Thank you <extra_id_0> me to your party <extra_id_1> week</s>"
    target: "<extra_id_0> for inviting <extra_id_1> last</s>"

A port of `random_spans_noise_mask` from the T5 codebase: neither transformers nor datasets ships it as
a library function (only as example scripts). Kept apart from the pretraining run so the objective can
be read, and tested, on its own.
"""

from __future__ import annotations

import numpy as np

from study.config import StudyError


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Split `num_items` into `num_segments` non-empty segments, uniformly at random; their lengths."""
    # As T5: shuffle (num_segments - 1) "a segment starts here" marks over the num_items - 1 gaps.
    first_in_segment = np.concatenate([[0], rng.permutation(np.arange(num_items - 1) < num_segments - 1)])
    segment_id = np.cumsum(first_in_segment)
    return np.bincount(segment_id, minlength=num_segments)


def noise_mask(length: int, rng: np.random.Generator, noise_density: float = 0.15,
               mean_span_length: float = 3.0, random_roll: bool = False) -> np.ndarray:
    """Which of `length` tokens to drop: `random_spans_noise_mask` of the T5 codebase, in numpy.

    round(length * density) noise tokens (at least 1, at most length - 1) in round(noise / mean span)
    spans (at least 1); noise and non-noise lengths are random segmentations, interleaved starting
    with non-noise, so the sequence always ends inside a noise span. `random_roll` (T5's option, off
    by default there) then rotates the mask by a random offset, which may split the last span in two.
    """
    if noise_density <= 0.0 or length == 0:
        return np.zeros(length, dtype=bool)
    orig_length, length = length, max(length, 2)  # T5 pads a 1-token sequence to 2 (then drops nothing)
    # Python's round() rounds half to even, like tf.round in the T5 code.
    num_noise = min(max(round(length * noise_density), 1), length - 1)
    # T5 needs no upper clamp at its settings; here it keeps odd densities (e.g. 0.9) well defined.
    num_spans = min(max(round(num_noise / mean_span_length), 1), num_noise, length - num_noise)
    noise_lengths = _random_segmentation(num_noise, num_spans, rng)
    nonnoise_lengths = _random_segmentation(length - num_noise, num_spans, rng)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
    span_starts = np.cumsum(interleaved)[:-1]
    start_indicator = np.zeros(length, dtype=np.int64)
    start_indicator[span_starts] = 1
    mask = (np.cumsum(start_indicator) % 2 == 1)[:orig_length]
    if random_roll:
        mask = np.roll(mask, rng.integers(length))
    return mask


def span_corrupt(ids: list[int], rng: np.random.Generator, sentinel_ids: list[int], eos_id: int,
                 noise_density: float = 0.15, mean_span_length: float = 3.0,
                 random_roll: bool = False) -> tuple[list[int], list[int]]:
    """One T5 span-corruption example from `ids` (token ids without eos): (input ids, target ids).

    The input keeps the non-noise tokens and puts sentinel k where the k-th noise span was; the target
    is each sentinel followed by the tokens it replaced; both end with eos. The target has no final
    sentinel before eos, as in the T5 codebase (without a roll the sequence always ends in noise, so
    nothing follows the last span; the paper's figure shows one because its example ends in kept text).
    A 1-token sequence has no noise: input `[t, eos]`, target `[eos]`.
    """
    mask = noise_mask(len(ids), rng, noise_density, mean_span_length, random_roll)
    inputs: list[int] = []
    targets: list[int] = []
    span = -1
    for i, (token, noisy) in enumerate(zip(ids, mask, strict=True)):
        if noisy:
            if i == 0 or not mask[i - 1]:  # a new noise span: its sentinel goes to both sides
                span += 1
                if span >= len(sentinel_ids):
                    raise ValueError(f"sequence of {len(ids)} tokens needs more than {len(sentinel_ids)} sentinels")
                inputs.append(sentinel_ids[span])
                targets.append(sentinel_ids[span])
            targets.append(int(token))
        else:
            inputs.append(int(token))
    return inputs + [eos_id], targets + [eos_id]


def sentinel_ids_of(tokenizer) -> list[int]:
    """[id of <extra_id_0>, id of <extra_id_1>, ...] for every sentinel the tokenizer has."""
    vocab = tokenizer.get_vocab()
    ids = []
    while f"<extra_id_{len(ids)}>" in vocab:
        ids.append(vocab[f"<extra_id_{len(ids)}>"])
    if not ids:
        raise StudyError("the tokenizer has no <extra_id_N> sentinels, which T5's span corruption needs")
    return ids
