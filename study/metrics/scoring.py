"""Text scores a translation researcher would accept: sacrebleu's BLEU and chrF with their signatures,
BLEU's parts, and exact match. Only sacrebleu: the analysis uses this module without torch.
"""

from __future__ import annotations

import sacrebleu


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def translation_scores(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU, chrF (sacrebleu defaults: 13a tokenization, chrF2) and exact match, with signatures."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu, chrf = sacrebleu.metrics.BLEU(), sacrebleu.metrics.CHRF()
    exact = sum(normalize_whitespace(h) == normalize_whitespace(r) for h, r in zip(hypotheses, references))
    return {
        "bleu": bleu.corpus_score(hypotheses, [references]).score,
        "chrf": chrf.corpus_score(hypotheses, [references]).score,
        "exact_match": exact / max(len(references), 1),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }


def signatures() -> dict[str, str]:
    """The sacrebleu signatures of the BLEU and chrF this module reports (recorded with every result).

    sacrebleu only knows the signature (it includes the number of references) after scoring something.
    """
    scores = translation_scores(["a"], ["a"])
    return {"bleu_signature": scores["bleu_signature"], "chrf_signature": scores["chrf_signature"]}


def bleu_parts(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """BLEU's n-gram precisions (`bleu_p1`..`bleu_p4`), `brevity_penalty` and output/reference `length_ratio`,
    from sacrebleu's BLEU with the defaults `translation_scores` scores with."""
    bleu = sacrebleu.metrics.BLEU().corpus_score(hypotheses, [references])
    return {"bleu_p1": bleu.precisions[0], "bleu_p2": bleu.precisions[1], "bleu_p3": bleu.precisions[2],
            "bleu_p4": bleu.precisions[3], "brevity_penalty": bleu.bp,
            "length_ratio": bleu.sys_len / max(bleu.ref_len, 1)}
