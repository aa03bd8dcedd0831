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


def references_by_source(sources: list[str], hypotheses: list[str], references: list[str]
                         ) -> tuple[list[str], list[list[str]]]:
    """Each distinct source once, in first-seen order: its hypothesis and every distinct reference its rows
    give. Rows that share a source share a hypothesis (`evaluate` translates each distinct source once)."""
    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(f"{len(sources)} sources, {len(hypotheses)} hypotheses, {len(references)} references")
    position: dict[str, int] = {}
    hyps: list[str] = []
    refs: list[list[str]] = []
    for source, hypothesis, reference in zip(sources, hypotheses, references):
        if source not in position:
            position[source] = len(hyps)
            hyps.append(hypothesis)
            refs.append([])
        if reference not in refs[position[source]]:
            refs[position[source]].append(reference)
    return hyps, refs


def reference_streams(refs_per_source: list[list[str]]) -> list[list[str]]:
    """sacrebleu's multi-reference layout: stream k holds every source's k-th reference.

    A source with fewer references than the most-referenced one is padded with its own first reference,
    not with sacrebleu's '' placeholder: a repeated reference adds no n-gram and no new length, so the
    score equals sacrebleu's variable-reference score exactly, whereas a '' read back from a file by the
    command line is a 0-word reference that BLEU's closest-reference-length rule can pick."""
    depth = max((len(r) for r in refs_per_source), default=0)
    return [[refs[k] if k < len(refs) else refs[0] for refs in refs_per_source] for k in range(depth)]


def multi_reference_bleu(sources: list[str], hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU with each distinct source scored once against all its references, and its signature.

    Next to `translation_scores`' one-reference-per-row BLEU, which scores a source with k references k
    times, each time against one of them, so a translation matching a sibling reference counts as wrong."""
    hyps, refs = references_by_source(sources, hypotheses, references)
    bleu = sacrebleu.metrics.BLEU()
    score = bleu.corpus_score(hyps, reference_streams(refs)).score
    return {"bleu_multi": score, "bleu_multi_signature": str(bleu.get_signature()), "sources": len(hyps),
            "multi_reference_sources": sum(len(r) >= 2 for r in refs), "max_references": max(map(len, refs), default=0)}
