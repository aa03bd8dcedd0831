"""Score a study's exported models on another pairs file: no training, no Ray.

    python -m study.evaluate results/<study> --data my-test.tsv
    python -m study.evaluate results/<study> --data pairs.csv --src-col english --tgt-col french --regime full

Each regime's `<regime>/model/` is scored exactly as the study scored its test split - the same cleaning,
tokenization limits, decoding and sacrebleu metrics, with their signatures. Prints one row per regime and
writes `<study>/evaluate-<data name>.csv`, and each regime's translations and references as
`<study>/<regime>/evaluate-<data name>.hyp.txt` / `.ref.txt`, which the sacrebleu command line re-scores:

    sacrebleu <study>/full/evaluate-NAME.ref.txt -i <study>/full/evaluate-NAME.hyp.txt -m bleu chrf
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

from study.cli import ArgumentParser, run_cli
from study.config import FIELDS, Config, StudyError
from study.data.pairs import clean_pairs, load_pairs

SCORES = ("bleu", "chrf", "exact_match", "loss", "ppl")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m study.evaluate", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="the study folder, results/<study name>")
    p.add_argument("--data", required=True, help=FIELDS["data"].metadata["help"])
    p.add_argument("--src-col", help=FIELDS["src_col"].metadata["help"])
    p.add_argument("--tgt-col", help=FIELDS["tgt_col"].metadata["help"])
    p.add_argument("--regime", help="a comma list of regimes to score (default: every exported one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--cache-dir", default=Config().cache_dir, help="where the tokenized pairs are cached")
    return p


def output_name(spec: str) -> str:
    """`evaluate-<name>`: the pairs file's stem (or the dataset's name), safe as a file name."""
    stem = spec[len("hf:"):] if spec.startswith("hf:") else Path(spec).stem
    return "evaluate-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "data")


def score_regime(study_dir: Path, regime: str, pairs, config: Config, device: str) -> tuple[dict, list, list]:
    """(scores, hypotheses, references) of the regime's exported model on cleaned `pairs`."""
    from datasets import DatasetDict

    from study.data.encoding import tokenize_splits
    from study.metrics.generation import score_split
    from study.model.device import pick_device
    from study.outputs.export import load_exported

    model, tokenizer = load_exported(study_dir, regime)
    with contextlib.redirect_stdout(sys.stderr):  # its cache lines are progress; stdout is the table
        tokenized, counts = tokenize_splits(DatasetDict({"evaluate": pairs}), tokenizer, config)
    if len(tokenized["evaluate"]) == 0:
        raise StudyError(f"every pair of --data {config.data} is over the study's token limits "
                         f"({config.max_source_tokens} source, {config.max_target_tokens} target tokens)")
    where = pick_device(device)
    metrics, hypotheses, references = score_split(model.to(where), tokenized["evaluate"], tokenizer, config, where,
                                               split="evaluate")
    scores = {name: float(metrics[f"evaluate_{name}"]) for name in SCORES}
    return {"regime": regime, "pairs": len(references), "dropped_overlong": counts["evaluate_dropped_overlong"],
            **scores}, hypotheses, references


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    import datasets
    import pandas as pd

    from study.common import write_lines, write_text
    from study.metrics.scoring import signatures
    from study.outputs.export import pick_regimes, study_config

    datasets.utils.logging.disable_progress_bar()  # the command's output is its table
    study_dir = Path(args.study)
    regimes = pick_regimes(study_dir, args.regime)
    # The data stage's settings (prefix, cleaning, token limits) are the study's; only the pairs change.
    configs = {r: study_config(study_dir, r).replace(data=args.data, src_col=args.src_col, tgt_col=args.tgt_col,
                                                     cache_dir=str(Path(args.cache_dir).expanduser().resolve()))
               for r in regimes}
    first = configs[regimes[0]]
    pairs, counts = clean_pairs(load_pairs(args.data, args.src_col, args.tgt_col), first)
    print(f"data {args.data}: read {counts['read']} pairs, kept {counts['kept']}", file=sys.stderr, flush=True)
    scored = {r: score_regime(study_dir, r, pairs, configs[r], args.device) for r in regimes}
    # Every regime scored before anything is written: an error leaves no partial result behind.
    name = output_name(args.data)
    for regime, (_, hypotheses, references) in scored.items():
        write_lines(study_dir / regime / f"{name}.hyp.txt", hypotheses)
        write_lines(study_dir / regime / f"{name}.ref.txt", references)
    table = pd.DataFrame([row for row, _, _ in scored.values()]).assign(data=args.data, **signatures())
    csv = study_dir / f"{name}.csv"
    write_text(csv, table.to_csv(index=False))
    print(table[["regime", "pairs", *SCORES]].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"\nwritten: {csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
