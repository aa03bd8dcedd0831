"""Is one system's test BLEU really higher than another's? sacrebleu's paired bootstrap resampling.

The p-value is sacrebleu's own (`sacrebleu.significance.PairedTest`, test type "bs"), so that
`sacrebleu REF -i HYP_A HYP_B --paired-bs` on the same files prints the same one. sacrebleu reports no
interval for the *difference*, only for each system's mean, so the 95 % interval of B − A is read off the
very resamples sacrebleu draws: the same seed (SACREBLEU_SEED, 12345 by default, what the command line
uses too), the same sentence indices, the same sufficient statistics. Only sacrebleu and numpy: the
analysis uses this module without torch.
"""

from __future__ import annotations

import os

import numpy as np
import sacrebleu
from sacrebleu.significance import PairedTest

RESAMPLES = 1000  # sacrebleu's default for --paired-bs (--paired-bs-n)


def _bootstrap_indices(sentences: int, resamples: int) -> np.ndarray:
    """The resamples `sacrebleu.significance._paired_bs_test` draws: the same seed, the same call."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    rng = np.random.default_rng(None if seed.lower() == "none" else int(seed) or None)
    return rng.choice(sentences, size=(resamples, sentences), replace=True)


def _resampled_bleu(bleu: sacrebleu.metrics.BLEU, hypotheses: list[str], references: list[list[str]],
                    idxs: np.ndarray) -> np.ndarray:
    # sacrebleu's private helpers, exactly as its paired bootstrap calls them: per-sentence n-gram counts,
    # summed per resample, turned into corpus BLEU.
    stats = np.array(bleu._extract_corpus_statistics(hypotheses, references), dtype="float32")
    return np.array([bleu._compute_score_from_stats(s.sum(0)).score for s in stats[idxs]])


def paired_bootstrap(references: list[str] | list[list[str]], baseline: list[str], system: list[str],
                     resamples: int = RESAMPLES) -> dict:
    """BLEU of `system` minus BLEU of `baseline` on the same test sentences: the difference, its 95 %
    bootstrap interval (2.5th to 97.5th percentile of the resampled differences), sacrebleu's paired
    bootstrap p-value and its signature. `references`: one reference per sentence, or reference streams."""
    if not len(baseline) == len(system) or not baseline:
        raise ValueError(f"paired test needs the same non-empty sentences: {len(baseline)} vs {len(system)}")
    streams = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    if any(len(stream) != len(baseline) for stream in streams):
        raise ValueError(f"{len(baseline)} hypotheses but reference streams of {[len(s) for s in streams]}")
    signatures, scores = PairedTest([("baseline", baseline), ("system", system)], {"BLEU": sacrebleu.metrics.BLEU()},
                                    references=streams, test_type="bs", n_samples=resamples)()
    base_result, sys_result = scores["BLEU"]
    idxs = _bootstrap_indices(len(baseline), resamples)
    bleu = sacrebleu.metrics.BLEU()
    resampled_system, resampled_baseline = (_resampled_bleu(bleu, h, streams, idxs) for h in (system, baseline))
    differences = np.sort(resampled_system - resampled_baseline)
    cut = resamples // 40  # the 2.5 % tails, as sacrebleu's own estimate_ci cuts them
    low, high = float(differences[cut]), float(differences[resamples - cut - 1])
    return {"bleu_baseline": base_result.score, "bleu_system": sys_result.score,
            "difference": sys_result.score - base_result.score, "ci_low": low, "ci_high": high,
            "p_value": float(sys_result.p_value), "significant": bool(low > 0 or high < 0),
            # sacrebleu prints these means too: equal means show the interval comes from its very resamples
            "mean_baseline": float(resampled_baseline.mean()), "mean_system": float(resampled_system.mean()),
            "resamples": resamples, "signature": str(signatures["BLEU"])}
