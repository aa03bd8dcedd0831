"""`python -m study.run --max-train-pairs 500,2000,8000`: the data sweep — one study per training-set size,
then how each regime's test BLEU and the `full` − `scratch` gap move with the size
(`study.analysis.data_sweep`).

    python -m study.run --regime all --max-train-pairs 500,2000,8000 --name q   # results/q-pairs500, ...,
                                                                               # then results/q-data-sweep/

Each size is a normal study (`<name>-pairs<N>`, run by study/series.py, the machinery --replicates shares) with
every other flag the same. What must not change with the size does not:
- the pairs: every study caps the training split with `train_subset: nested`, the first N pairs of one seeded
  order of it, so each size's pairs are a subset of the next's (`study.data.pairs.nested_indices`);
- the tokenizer and the tiny upstream: both learn from the *whole* training split, never the capped pairs, so
  their cache keys hold no `max_train_pairs`; the first study makes them, the others reuse them. Each study.json's
  `series` names both folders.
- validation and test: the same seeded subsets whatever the size (they never depended on it).
The sizes run one after another (study/series.py says why), then `python -m study.analyze --data-sweep` over
them writes data_sweep.csv, data_sweep.md and plots/data_sweep.png into `<name>-data-sweep/`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from study import series
from study.config import Config, StudyError

SUBSET = "nested"


def flag(text: str) -> int | str:
    """--max-train-pairs' argparse type: a whole number as it always was (so a parsed single cap reaches the
    Config as an int), anything else as given, for `sizes` to read or refuse in one line."""
    try:
        return int(text)
    except ValueError:
        return text


def sizes(text: str | int | None) -> list[int] | None:
    """--max-train-pairs as given: None (no cap), or its sizes (one: a single study's cap). StudyError in one line
    for anything but whole numbers > 0, each once."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        found = [int(p) for p in parts]
    except ValueError:
        raise StudyError(f"--max-train-pairs takes a number of training pairs, or a comma list of them for the data "
                         f"sweep (500,2000,8000); got {text!r}") from None
    if any(n <= 0 for n in found):
        raise StudyError(f"--max-train-pairs sizes must be at least 1 training pair; got {text!r}")
    if len(set(found)) < len(found):
        raise StudyError(f"--max-train-pairs lists a size twice ({text!r}); give each size once")
    return found


def check(args: argparse.Namespace, found: list[int]) -> None:
    """Refuse the combinations the sweep cannot run, in one line, before anything starts."""
    if args.resume:
        raise StudyError(f"--max-train-pairs with several sizes starts new studies; it cannot --resume "
                         f"{args.resume}: resume each unfinished size by its own name (<name>-pairs<N>), then run "
                         f"python -m study.analyze --data-sweep over them")
    if args.replicates is not None:
        raise StudyError("--max-train-pairs with several sizes cannot be combined with --replicates: run a sweep per "
                         "--seed (with its own --name) instead")
    if getattr(args, "train_subset", SUBSET) != SUBSET:
        raise StudyError(f"the data sweep needs --train-subset {SUBSET} (each size's pairs a subset of the next's); "
                         f"got --train-subset {args.train_subset}")


def shared_inputs(config: Config, need_upstream: bool, largest: int) -> dict:
    """The tokenizer and the tiny upstream every size shares (their cache folders: the upstream made or not
    yet), and the training split's size; StudyError when the largest size is more than the split holds."""
    from study.data.prepared import prepare_text
    from study.data.tokenizer import is_tiny
    from study.training.pretraining import monolingual_corpus, upstream_path

    text = prepare_text(config)
    whole = len(text.whole_train)
    if largest > whole:
        raise StudyError(f"--max-train-pairs {largest} is more than the {whole} training pairs of --data "
                         f"{config.data}; the sizes must be at most {whole}")
    out = {"training_split_pairs": whole, "tokenizer": text.tokenizer.name_or_path,
           "shared": f"both learn from the whole training split ({whole:,} pairs), never the capped pairs, so "
                     f"their cache keys hold no max_train_pairs"}
    if need_upstream and is_tiny(config.model):
        corpus = monolingual_corpus(list(text.whole_train["en"]), list(text.whole_train["fr"]), config.seed)
        out["upstream"] = str(upstream_path(config, text.tokenizer, corpus))
    return out


def plan(args: argparse.Namespace, found: list[int]) -> tuple[list[series.Member], str]:
    """(one study per size, smallest first, and the sweep's name)."""
    base = series.base_name(args)
    order = sorted(found)
    members = [series.Member(f"{base}-pairs{n}", {"max_train_pairs": n, "train_subset": SUBSET},
                             f"data sweep {k} of {len(order)}: study {base}-pairs{n} on {n} training pairs",
                             {"train_pairs": n}) for k, n in enumerate(order, 1)]
    return members, base


def run_sweep(args: argparse.Namespace, found: list[int], run_one: Callable[[argparse.Namespace], int],
              resolve: Callable, cache_dir: str) -> int:
    """Check, run each size's study with `run_one` (study.run's own), then the sweep's analysis."""
    from study.model.regimes import REGIMES

    check(args, found)
    first = argparse.Namespace(**{**vars(args), "max_train_pairs": max(found), "train_subset": SUBSET})
    config, _, regimes, _ = resolve(first)  # every flag checked before anything is written
    shared = shared_inputs(config, any(REGIMES[r].pretrained for r in regimes), max(found))
    members, base = plan(args, found)
    out = series.out_folder(args, f"{base}-data-sweep")
    record = {"kind": "data sweep", "name": base, "sizes": sorted(found), "train_subset": SUBSET, **shared}
    code, studies = series.run_series(
        args, members, out, run_one, cache_dir, record,
        lambda left: f"run the other sizes ({', '.join(left[1:]) or 'none'}) by their names with "
                     f"--max-train-pairs N --train-subset {SUBSET}, then python -m study.analyze --data-sweep over "
                     f"them all.")
    if code != 0:
        return code
    from study import analyze

    print(f"\n=== the data sweep over {len(studies)} sizes of {base} ===", flush=True)
    return analyze.main(["--data-sweep", *studies, "--out", str(out)])
