"""Analysis of a study directory: tables, plots and a report, read straight from the files a study leaves.

    python -m study.analyze results/<study> [--gpu-hour-cost USD] [--no-plots]
    python -m study.analyze s3://bucket/prefix/<study> [--cache-dir DIR]   # a study at a storage URI
    python -m study.analyze results/A results/B results/C [--out DIR]     # several studies in one view
    python -m study.analyze --data-sweep results/q-pairs500 results/q-pairs2000 ... [--out DIR]

    from study.analyze import load
    a = load("results/<study>")          # no Ray cluster, nothing re-run; works on a running study too
    a.trials, a.epochs, a.best, a.comparison, a.record

Reading a study: `study.analysis.load`; the report: `study.analysis.report`; plots: `study.analysis.plots`.
This command writes into the study directory: comparison.csv / .md / .parquet, pairwise.csv (regime A
against regime B over seeds and test sources), plots/*.png and report.md.
A study at a URI is pulled (trial results, no checkpoints) into a local staging folder, analysed there,
and only these output files are pushed back next to it: the study's own files at the URI are never
rewritten. Several studies (`study.analysis.compare`) are compared in one table and plot, written to --out
(default: `cross-study/` beside the first study): per regime the mean ± sd of its best trial's test BLEU,
each study's ranking of the regimes and how often each occurred, which settings differ between them, and
cross_study_pairwise.csv: regime A against regime B with the studies as the unit (`study.analysis.cross_study`),
beside each study's own verdict in the report. With --data-sweep, the studies are one study at several
--max-train-pairs (study/sweep.py): data_sweep.csv / .md and plots/data_sweep.png (`study.analysis.data_sweep`)
go to --out (default: `data-sweep/` beside the first study).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from study.analysis import conclusions
from study.analysis.load import STATUSES, StudyAnalysis, load
from study.analysis.report import comparison_markdown, write_report
from study.cli import ArgumentParser, run_cli
from study.common import write_atomic, write_text
from study.config import StudyError
from study.outputs.record import searched_names
from study.outputs.storage import is_uri, push_outputs, study_location

__all__ = ["STATUSES", "StudyAnalysis", "load", "main", "write_outputs"]


# --- writing ----------------------------------------------------------------------------------------------

def write_outputs(analysis: StudyAnalysis, plots: bool = True) -> list[Path]:
    """comparison.csv/.md/.parquet, pairwise.csv, plots/*.png (unless plots=False) and report.md; returns the
    paths."""
    out = analysis.path
    written = [out / "comparison.csv", out / "comparison.md", out / "comparison.parquet"]
    pairs = conclusions.pairwise(analysis)  # once: pairwise.csv and the report's table are the same figures
    write_text(written[0], analysis.comparison.to_csv(index=False))
    write_text(written[1], comparison_markdown(analysis) + "\n")
    write_atomic(written[2], lambda tmp: analysis.comparison.to_parquet(tmp, index=False))
    images: list[Path] = []
    if plots:
        from study.analysis.plots import make_plots

        images = make_plots(analysis, out / "plots", write_atomic)
    written.append(conclusions.write_pairwise(analysis, pairs))
    return written + images + [write_report(analysis, out, images, pairs=pairs)]


SHOWN_SCORES = ["regime", "state", "test_bleu", "test_chrf", "test_loss", "best_val_bleu"]
SHOWN_RUN = ["best_epoch", "search_wall_s", "trials", "pruned", "errored", "cost_usd"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m study.analyze", description=__doc__.split("\n\n")[0])
    parser.add_argument("study_dir", nargs="+", help="a study directory written by python -m study.run, or its URI "
                                                     "(the run's --results URI followed by /<study>); several: "
                                                     "compare them")
    parser.add_argument("--gpu-hour-cost", type=float, metavar="USD",
                        help="price of one GPU-hour: adds cost_usd = search wall hours x GPUs held x USD "
                             "(GPUs held = gpus_per_trial x max_concurrent; a CPU-only study counts as one machine)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--cache-dir", metavar="DIR", help="for a study at a URI: it is staged for the analysis "
                        "under DIR/analysis (default: the study's cache, $T5STUDY_CACHE or ~/.cache/t5-regime-study)")
    parser.add_argument("--out", metavar="DIR", help="with several studies: where the cross-study table, report "
                        "and plot go (default: cross-study/ beside the first study)")
    parser.add_argument("--data-sweep", action="store_true", help="the studies are one study at several "
                        "--max-train-pairs: test BLEU and full - scratch against training pairs (data_sweep.csv, "
                        "plots/data_sweep.png; default --out: data-sweep/ beside the first study)")
    args = parser.parse_args(argv)
    if args.data_sweep:
        return run_cli(lambda: _data_sweep(args))
    if len(args.study_dir) > 1:
        return run_cli(lambda: _compare(args))
    if args.out:
        parser.error("--out is for several studies; a single study's analysis is written into its folder")
    [args.study_dir] = args.study_dir
    at_uri = is_uri(args.study_dir)
    study = args.study_dir if at_uri else Path(args.study_dir)

    def body() -> None:
        where = study_location(args.study_dir, args.cache_dir) if at_uri else None
        analysis = load(study, gpu_hour_cost=args.gpu_hour_cost, cache_dir=args.cache_dir)
        try:
            written = write_outputs(analysis, plots=not args.no_plots)
        except OSError as err:
            raise StudyError(f"cannot write the analysis into {analysis.path}: {err}") from err
        if where is not None:
            push_outputs(where, written)
        columns = SHOWN_SCORES + searched_names(analysis.record.get("search_spaces", {})) + SHOWN_RUN
        shown = analysis.comparison[[c for c in columns if c in analysis.comparison]]
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if analysis.unfinished:
            print(f"unfinished regimes (no best.json yet): {', '.join(analysis.unfinished)}")
        report = f"{where.remote}/report.md" if where else analysis.path / "report.md"
        print(f"{len(written)} files written; report: {report}")

    return run_cli(body)


def _out(args, default: str) -> Path:
    """Where an analysis over several studies goes: --out, else `default` beside the first study (for a study at
    a URI: here); never one of the studies."""
    first = args.study_dir[0]
    out = Path(args.out) if args.out else Path(default) if is_uri(first) else Path(first).parent / default
    if out.resolve() in {Path(p).resolve() for p in args.study_dir if not is_uri(p)}:
        raise StudyError(f"--out {out} is one of the studies compared; pass a folder of its own")
    return out


def _data_sweep(args) -> None:
    from study.analysis import data_sweep
    from study.analysis.compare import compare

    out = _out(args, "data-sweep")
    c = compare(args.study_dir, cache_dir=args.cache_dir)  # the studies, and which settings differ between them
    differing = [f"{r['setting']}" for _, r in c.settings.iterrows() if r["differs"]
                 and r["setting"] != "config.max_train_pairs"]
    try:
        written = data_sweep.write(c.studies, c.analyses, out, differing, plots=not args.no_plots)
    except OSError as err:
        raise StudyError(f"cannot write the data sweep into {out}: {err}") from err
    frame = pd.read_csv(written[0])
    print(frame.drop(columns=["reason", "study"]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\n" + data_sweep.closing(frame))
    print(f"{len(written)} files written; data sweep: {written[0]} ({', '.join(str(p) for p in written[1:])})")


def _compare(args) -> None:
    from study.analysis.compare import comparability, compare, write_comparison
    from study.analysis.cross_study import FILE as CROSS_STUDY_FILE

    out = _out(args, "cross-study")
    c = compare(args.study_dir, cache_dir=args.cache_dir)
    try:
        written = write_comparison(c, out, plots=not args.no_plots)
    except OSError as err:
        raise StudyError(f"cannot write the comparison into {out}: {err}") from err
    print(c.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("\n" + c.ranking_counts.drop(columns="share").to_string(index=False))
    print("\ncomparable? " + comparability(c))
    pairs = next(p for p in written if p.name == CROSS_STUDY_FILE)
    print("\n" + pd.read_csv(pairs).drop(columns="reason").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"{len(written)} files written; report: {out / 'cross_study.md'}; cross-study verdict: {pairs}")


if __name__ == "__main__":
    sys.exit(main())
