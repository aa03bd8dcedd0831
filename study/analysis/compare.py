"""Several studies in one view: per regime the mean ± sd of its best trial's test BLEU across the studies, each
study's ranking of the regimes and how often each ranking occurred, and whether the studies compare at all.

    python -m study.analyze results/quick-seed0 results/quick-seed1 results/quick-seed2 [--out DIR]

    from study.analysis.compare import compare
    c = compare(["results/a", "results/b"])     # c.table, c.scores, c.rankings, c.ranking_counts, c.settings

The typical use is one study run at several seeds (the same settings but `seed`), or on two data sets. Every
study is read with `study.analysis.load` (finished regimes only: a regime without best.json has no test
score). "Comparable" means the same data, model, budget, search spaces, scoring and regimes; the settings
table says which differ. A study's `seed` is expected to differ and is shown, never counted against it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study.analysis.load import StudyAnalysis, load
from study.analysis.report import markdown_table
from study.config import StudyError

# What must agree for the studies' scores to compare, by what it is about: (group, where in study.json).
COMPARED: list[tuple[str, str]] = [
    *[("data", f"config.{k}") for k in ("data", "src_col", "tgt_col", "split", "data_seed", "max_chars", "overlong",
                                         "max_train_pairs", "max_eval_pairs", "max_test_pairs", "max_source_tokens",
                                         "max_target_tokens", "prefix")],
    *[("model", f"config.{k}") for k in ("model", "tiny_vocab_size", "tiny_d_model", "tiny_layers", "tiny_heads",
                                          "tiny_d_ff", "pretrain_steps", "decoder_embedding")],
    *[("budget", f"budget.{k}") for k in ("num_samples", "max_epochs", "searcher", "scheduler", "grace_period",
                                           "reduction_factor", "seeds")],
    ("search", "search_spaces"), ("scoring", "bleu_signature"), ("regimes", "finished regimes"),
]
SHOWN_ONLY = [("seed", "seed")]  # expected to differ between repeats of a study


@dataclass
class StudyComparison:
    studies: list[str]  # a label per study (its folder's name, made unique)
    scores: pd.DataFrame  # one row per (study, regime): the best trial's test_bleu
    table: pd.DataFrame  # one row per regime: studies, test_bleu mean, sd, min, max, and each study's value
    rankings: pd.DataFrame  # one row per study: its ranking of the regimes it finished, best first
    ranking_counts: pd.DataFrame  # one row per distinct ranking: how many studies, and which
    settings: pd.DataFrame  # one row per setting compared: each study's value, and whether they differ
    analyses: list[StudyAnalysis] = field(repr=False, default_factory=list)

    @property
    def differences(self) -> list[str]:
        """The settings that differ between the studies (the seed aside), as `group: setting`."""
        s = self.settings
        return [f"{g}: {k}" for g, k in s.loc[s["differs"] & (s["group"] != "seed"), ["group", "setting"]].values]

    @property
    def comparable(self) -> bool:
        return not self.differences


def _labels(analyses: list[StudyAnalysis], given: Sequence[str]) -> list[str]:
    labels: list[str] = []
    for analysis, path in zip(analyses, given):
        base = str(path).rstrip("/").rsplit("/", 1)[-1] or analysis.path.name
        label, k = base, 2
        while label in labels:  # two studies of one name in different folders
            label, k = f"{base}#{k}", k + 1
        labels.append(label)
    return labels


def _value(record: dict, where: str, analysis: StudyAnalysis):
    if where == "finished regimes":
        return ",".join(sorted(analysis.best["regime"])) if len(analysis.best) else ""
    value = record
    for part in where.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value


def _ranking(scores: pd.Series) -> str:
    """Regimes best first by test BLEU ("a > b"); equal scores are tied ("a = b")."""
    ordered = scores.sort_values(ascending=False, kind="stable")
    text = ""
    for i, (regime, value) in enumerate(ordered.items()):
        text += regime if i == 0 else (" = " if value == ordered.iloc[i - 1] else " > ") + regime
    return text


def compare(paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike | None = None) -> StudyComparison:
    """Read each study (a folder or a study's URI) and compare them; StudyError if fewer than two are given,
    one is not a study, or none has a finished regime."""
    if len(paths) < 2:
        raise StudyError("comparing studies needs at least two study folders")
    analyses = [load(p, cache_dir=cache_dir) for p in paths]
    labels = _labels(analyses, [str(p) for p in paths])
    rows = [{"study": label, "regime": r["regime"], "test_bleu": r["test_bleu"]}
            for label, a in zip(labels, analyses) for _, r in a.best.iterrows() if pd.notna(r.get("test_bleu"))]
    scores = pd.DataFrame(rows, columns=["study", "regime", "test_bleu"])
    if scores.empty:
        raise StudyError(f"none of {', '.join(labels)} has a finished regime (no best.json with a test score); "
                         f"finish or resume them first")
    order = list(dict.fromkeys(r for a in analyses for r in [*a.record.get("regimes", []), *a.best["regime"]]
                               if r in set(scores["regime"])))
    wide = scores.pivot(index="regime", columns="study", values="test_bleu").reindex(index=order, columns=labels)
    grouped = scores.groupby("regime")["test_bleu"]
    table = pd.DataFrame({"studies": grouped.count(), "test_bleu_mean": grouped.mean(), "test_bleu_sd": grouped.std(),
                          "test_bleu_min": grouped.min(), "test_bleu_max": grouped.max()}).reindex(order)
    table = pd.concat([table, wide], axis=1).rename_axis("regime").reset_index()
    rankings = pd.DataFrame(
        [{"study": label, "regimes": int(wide[label].notna().sum()), "ranking": _ranking(wide[label].dropna())}
         for label in labels])
    counted = rankings.groupby("ranking", sort=False)["study"].agg(list)
    ranking_counts = pd.DataFrame({"ranking": counted.index, "studies": counted.map(len).values,
                                   "share": counted.map(len).values / len(labels),
                                   "which": counted.map(", ".join).values})
    ranking_counts = ranking_counts.sort_values("studies", ascending=False, kind="stable").reset_index(drop=True)
    settings = []
    for group, where in COMPARED + SHOWN_ONLY:
        values = [_value(a.record, where, a) for a in analyses]
        settings.append({"group": group, "setting": where, **dict(zip(labels, values)),
                         "differs": len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1})
    return StudyComparison(labels, scores, table, rankings, ranking_counts, pd.DataFrame(settings), analyses)


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def comparison_markdown(c: StudyComparison, pairs: pd.DataFrame | None = None) -> str:
    """The cross-study report: the table, the rankings and their counts, regime A against regime B with the
    studies as the unit (`pairs`: `cross_study.pairwise_across`, computed here if not given) beside each study's
    own verdict, and what differs between the studies."""
    from study.analysis import cross_study

    if pairs is None:
        pairs = cross_study.pairwise_across(c.studies, c.analyses)
    rows = [[r["regime"], str(r["studies"]), f"{_fmt(r['test_bleu_mean'])} ± {_fmt(r['test_bleu_sd'])}",
             f"{_fmt(r['test_bleu_min'])} – {_fmt(r['test_bleu_max'])}", *[_fmt(r[s]) for s in c.studies]]
            for _, r in c.table.iterrows()]
    parts = [f"# {len(c.studies)} studies compared: {', '.join(c.studies)}", "",
             "Each regime's best trial (by validation BLEU), scored on its study's test split; mean ± sd (sample sd) "
             "across the studies that finished the regime.", "",
             markdown_table(["regime", "studies", "test BLEU mean ± sd", "min – max", *c.studies], rows), "",
             "## Rankings", "",
             markdown_table(["study", "ranking (test BLEU, best first)"], [[r.study, r.ranking] for r in
                                                                         c.rankings.itertuples()]), "",
             markdown_table(["ranking", "studies", "share", "which"],
                            [[r.ranking, str(r.studies), f"{r.share:.0%}", r.which] for r in
                             c.ranking_counts.itertuples()]), "",
             *cross_study.section(c.studies, c.analyses, pairs, markdown_table),
             "## Comparable?", "", comparability(c)]
    return "\n".join(parts) + "\n"


def comparability(c: StudyComparison) -> str:
    """One paragraph: whether the studies share data, model, budget, search spaces, scoring and regimes."""
    seeds = c.settings.loc[c.settings["group"] == "seed", c.studies].iloc[0].tolist()
    seed_note = f" Seeds: {', '.join(map(str, seeds))}."
    if c.comparable:
        how = ("the studies differ only in their seed, so the spread above is the spread of a repeated study"
               if len(set(map(str, seeds))) > 1 else "the seed too, so only the runs themselves differ")
        return f"Yes: the same data, model, budget, search spaces, scoring and finished regimes; {how}." + seed_note
    differ = c.settings[c.settings["differs"] & (c.settings["group"] != "seed")]
    lines = [f"- {r['group']} `{r['setting']}`: " + "; ".join(f"{s} {_short(r[s])}" for s in c.studies)
             for _, r in differ.iterrows()]
    return (f"Not as a repeat: they differ in {', '.join(dict.fromkeys(differ['group']))}, so the spread above mixes "
            f"those differences with the seed's." + seed_note + "\n\n" + "\n".join(lines))


def _short(value) -> str:
    text = "-" if value is None else str(value)
    return f"`{text if len(text) <= 60 else text[:57] + '...'}`"


def write_comparison(c: StudyComparison, out: Path, plots: bool = True) -> list[Path]:
    """cross_study.csv / .md, rankings.csv, settings.csv, cross_study_pairwise.csv (regime A against B with the
    studies as the unit) and plots/cross_study.png in `out`; returns the paths."""
    from study.analysis import cross_study as across
    from study.common import write_atomic, write_text

    pairs = across.pairwise_across(c.studies, c.analyses)  # once: the CSV and the report's figures agree
    written = [out / "cross_study.csv", out / "rankings.csv", out / "settings.csv", out / "cross_study.md",
               across.write(pairs, out)]
    write_text(written[0], c.table.to_csv(index=False))
    write_text(written[1], c.rankings.merge(c.ranking_counts[["ranking", "studies"]].rename(
        columns={"studies": "studies_with_this_ranking"}), on="ranking").to_csv(index=False))
    write_text(written[2], c.settings.to_csv(index=False))
    write_text(written[3], comparison_markdown(c, pairs))
    if plots:
        from study.analysis.plots import cross_study

        if cross_study(c, out / "plots" / "cross_study.png", write_atomic):
            written.append(out / "plots" / "cross_study.png")
    return written
