"""A model on a tokenized split: loss, perplexity and translations, scored by `study.metrics.scoring`.

- Loss and perplexity: mean negative log-likelihood over *real* target tokens (labels of -100 — the
  padding — never count), summed over the whole split before dividing, so batch composition does not
  change the figure; perplexity is exp of that mean.
- Generation: `num_beams` from the config, batches sorted by source length, and a length limit derived
  from the *source* (never from the padded label length, which let the original notebook's untrained
  models babble up to the longest reference on every batch).
- Scores: BLEU, chrF and exact match (`study.metrics.scoring`), and `<split>_bleu_multi`: each distinct
  source scored once against all the references its rows give. Selection (ASHA, Optuna, the best trial)
  stays on the one-reference-per-row `<split>_bleu`: it is the figure every earlier study and the original
  notebook report, and a resumed search must keep ranking on what its first trials were ranked on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from study.config import Config
from study.data.batching import make_loader
from study.metrics.scoring import multi_reference_bleu, translation_scores
from study.model.device import autocast
from study.progress import Progress


def generation_limit(source_len: int, max_target_tokens: int) -> int:
    """New tokens allowed for a source of `source_len` content tokens (task prefix excluded): French runs
    ~1.2x English, plus slack for short sentences."""
    return min(max_target_tokens, int(1.5 * source_len) + 10)


def prefix_length(tokenizer: PreTrainedTokenizerBase, prefix: str) -> int:
    """Tokens the task prefix adds to every source; they say nothing about the translation's length."""
    return len(tokenizer(prefix, add_special_tokens=False).input_ids) if prefix else 0


@torch.no_grad()
def token_nll(model, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int,
              device: torch.device, precision: str = "auto") -> tuple[float, int]:
    """Summed NLL over real target tokens and their count (teacher forcing)."""
    model.eval()
    total, count = 0.0, 0
    for batch in make_loader(dataset, tokenizer, batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           labels=batch["labels"]).logits
        labels = batch["labels"]
        total += F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                 reduction="sum").item()
        count += int((labels != -100).sum())
    return total, count


@torch.no_grad()
def translate(model, sources: list[list[int]], tokenizer: PreTrainedTokenizerBase, *, num_beams: int,
              batch_size: int, max_target_tokens: int, device: torch.device, prefix_tokens: int = 0,
              precision: str = "auto", progress: str | None = None) -> list[str]:
    """Translate tokenized sources (each starting with `prefix_tokens` of task prefix), batched by length;
    returns text in the input order. `progress`: a description to show progress over the batches under."""
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]), reverse=True)
    out: list[str] = [""] * len(sources)
    bar = Progress(math.ceil(len(order) / batch_size) if progress else 0, progress or "", unit="batch")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [sources[i] for i in idx]}, return_tensors="pt").to(device)
        limit = generation_limit(max(len(sources[i]) for i in idx) - prefix_tokens, max_target_tokens)
        with autocast(device, precision):
            generated = model.generate(**batch, num_beams=num_beams, max_new_tokens=limit, do_sample=False,
                                       early_stopping=num_beams > 1)
        for i, text in zip(idx, tokenizer.batch_decode(generated, skip_special_tokens=True,
                                                              clean_up_tokenization_spaces=False)):
            out[i] = text.strip()
        bar.update()
    bar.close()
    return out


def score_split(model, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, config: Config, device: torch.device,
             split: str = "val") -> tuple[dict, list[str], list[str]]:
    """Loss, perplexity, exact match, BLEU and chrF of `model` on a tokenized split, decoding with
    `config.num_beams` in batches of `config.eval_batch_size`.

    Returns (metrics named `<split>_...`, hypotheses, references). Each distinct source is translated
    once, however many references it has in the split.
    """
    nll, tokens = token_nll(model, dataset, tokenizer, config.eval_batch_size, device, config.precision)
    mean_nll = nll / max(tokens, 1)
    hypotheses = decode_split(model, dataset, tokenizer, config, device, split)
    references = list(dataset["fr"])
    metrics = {
        f"{split}_loss": mean_nll,
        f"{split}_ppl": math.exp(min(mean_nll, 50.0)),  # capped: exp(50) already says "useless"
        **_text_scores(dataset, hypotheses, split),
    }
    return metrics, hypotheses, references


def _text_scores(dataset: Dataset, hypotheses: list[str], split: str) -> dict:
    references = list(dataset["fr"])
    scores = translation_scores(hypotheses, references)
    multi = multi_reference_bleu(list(dataset["en"]), hypotheses, references)
    return {f"{split}_exact_match": scores["exact_match"], f"{split}_bleu": scores["bleu"],
            f"{split}_chrf": scores["chrf"], f"{split}_bleu_multi": multi["bleu_multi"]}


def score_widths(model, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, config: Config,
                    device: torch.device, widths: tuple[int, ...], split: str = "val") -> dict:
    """`score_split` at each beam width of `widths`, the loss computed once (it does not depend on decoding): the
    best width's scores as `<split>_bleu`, `_chrf`, ..., each width's BLEU as `<split>_bleu_beam<w>` (greedy's
    also as `<split>_bleu_greedy`), and the width that won as `num_beams_best` (a tie goes to fewer beams: the
    cheaper decoder). One trained checkpoint answers which width decodes it best; no model is trained per width."""
    widths = tuple(sorted(set(widths)))
    metrics, hypotheses, _ = score_split(model, dataset, tokenizer, config.replace(num_beams=widths[0]), device, split)
    by_width = {widths[0]: metrics}
    for width in widths[1:]:
        hypotheses = decode_split(model, dataset, tokenizer, config.replace(num_beams=width), device, split)
        by_width[width] = {**metrics, **_text_scores(dataset, hypotheses, split)}
    best = max(widths, key=lambda w: (by_width[w][f"{split}_bleu"], -w))
    out = {**by_width[best], "num_beams_best": best}
    out.update({f"{split}_bleu_beam{w}": m[f"{split}_bleu"] for w, m in by_width.items()})
    if 1 in by_width:
        out[f"{split}_bleu_greedy"] = by_width[1][f"{split}_bleu"]
    return out


def greedy_bleu(model, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, config: Config,
                device: torch.device, split: str = "val") -> float:
    """BLEU of greedy decoding alone (no loss, no multi-reference scoring): what a trial decoding with beams
    also reports, so that trials can be ranked by their training rather than their decoder."""
    hypotheses = decode_split(model, dataset, tokenizer, config.replace(num_beams=1), device, split)
    return translation_scores(hypotheses, list(dataset["fr"]))["bleu"]


def decode_split(model, dataset: Dataset, tokenizer: PreTrainedTokenizerBase, config: Config, device: torch.device,
                 split: str = "val") -> list[str]:
    """One hypothesis per pair of a tokenized split, each distinct source translated once."""
    distinct: dict[tuple[int, ...], int] = {}
    for ids in dataset["input_ids"]:
        distinct.setdefault(tuple(ids), len(distinct))
    translations = translate(model, [list(k) for k in distinct], tokenizer, num_beams=config.num_beams,
                             batch_size=config.eval_batch_size, max_target_tokens=config.max_target_tokens,
                             device=device, prefix_tokens=prefix_length(tokenizer, config.prefix),
                             precision=config.precision, progress=f"{split} generation"
                             + (f" ({config.num_beams} beams)" if config.num_beams > 1 else ""))
    return [translations[distinct[tuple(ids)]] for ids in dataset["input_ids"]]
