"""Search spaces (YAML), the Optuna searcher and the ASHA scheduler of one regime's study.

A search-space file (`search_spaces/<regime>.yaml`) has three sections:

    search:                      # what Optuna samples, per trial
      lr: {distribution: loguniform, low: 1.0e-4, high: 3.0e-3}
      batch_size: {distribution: choice, values: [16, 32, 64]}
      num_beams: {distribution: choice, values: [1, 4]}
    fixed: {warmup_ratio: 0.06}  # Config fields set for every trial of this regime
    asha: {grace_period: 1, reduction_factor: 2}
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from study.config import Config, StudyError

DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")
SECTIONS = ("search", "fixed", "asha")
ASHA_KEYS = ("grace_period", "reduction_factor")
CONFIG_FIELDS = set(Config.__dataclass_fields__)
# Fields a trial may not change: they define the data and the model every trial of a study shares.
NOT_PER_TRIAL = {"data", "src_col", "tgt_col", "prefix", "max_chars", "overlong", "max_source_tokens",
                 "max_target_tokens", "split", "max_train_pairs", "max_eval_pairs", "max_test_pairs", "data_seed", "model",
                 "regime", "cache_dir", "tiny_vocab_size", "tiny_d_model", "tiny_layers", "tiny_heads",
                 "tiny_d_ff", "pretrain_steps"}


@dataclass
class SearchSpace:
    search: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    asha: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def tune_space(self) -> dict[str, Any]:
        """The `param_space` for `tune.Tuner`: Tune's own domain objects, which OptunaSearch converts."""
        from ray import tune

        space: dict[str, Any] = {}
        for name, spec in self.search.items():
            kind = spec["distribution"]
            if kind == "loguniform":
                space[name] = tune.loguniform(spec["low"], spec["high"])
            elif kind == "uniform":
                space[name] = tune.uniform(spec["low"], spec["high"])
            elif kind == "randint":
                space[name] = tune.randint(spec["low"], spec["high"] + 1)  # YAML bounds are inclusive
            else:
                space[name] = tune.choice(list(spec["values"]))
        return space


def _fail(source: str, message: str) -> StudyError:
    return StudyError(f"invalid search space {source}: {message}")


def _check_number(source: str, name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(source, f"{name}.{key} must be a finite number, got {value!r}")
    return value


def parse_search_space(raw: Any, source: str) -> SearchSpace:
    """Validate a parsed YAML document; every problem becomes one StudyError naming the file and key."""
    if not isinstance(raw, dict):
        raise _fail(source, "the file must be a mapping with sections search, fixed, asha")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise _fail(source, f"unknown section(s) {unknown}; allowed: {', '.join(SECTIONS)}")
    search = raw.get("search") or {}
    fixed = raw.get("fixed") or {}
    asha = raw.get("asha") or {}
    if not isinstance(search, dict) or not isinstance(fixed, dict) or not isinstance(asha, dict):
        raise _fail(source, "search, fixed and asha must each be a mapping")
    for name, spec in search.items():
        if name not in CONFIG_FIELDS or name in NOT_PER_TRIAL:
            raise _fail(source, f"cannot search {name!r}: it is not a per-trial setting "
                                f"(e.g. lr, batch_size, num_beams, warmup_ratio, weight_decay)")
        if not isinstance(spec, dict) or "distribution" not in spec:
            raise _fail(source, f"{name} needs a mapping with a 'distribution' key")
        kind = spec["distribution"]
        if kind not in DISTRIBUTIONS:
            raise _fail(source, f"{name}: unknown distribution {kind!r}; use one of {', '.join(DISTRIBUTIONS)}")
        expected = {"distribution", "values"} if kind == "choice" else {"distribution", "low", "high"}
        extra, missing = set(spec) - expected, expected - set(spec)
        if extra or missing:
            raise _fail(source, f"{name} ({kind}) takes keys {sorted(expected)}; "
                                f"unknown {sorted(extra)}, missing {sorted(missing)}")
        if kind == "choice":
            if not isinstance(spec["values"], list) or not spec["values"]:
                raise _fail(source, f"{name}: choice needs a non-empty list of values")
            continue
        low = _check_number(source, name, "low", spec["low"])
        high = _check_number(source, name, "high", spec["high"])
        if low >= high:
            raise _fail(source, f"{name}: low ({low}) must be below high ({high})")
        if kind == "loguniform" and low <= 0:
            raise _fail(source, f"{name}: loguniform bounds must be positive, got low={low}")
        if kind == "randint" and not (float(low).is_integer() and float(high).is_integer()):
            raise _fail(source, f"{name}: randint bounds must be whole numbers")
    for name in fixed:
        if name not in CONFIG_FIELDS or name in NOT_PER_TRIAL:
            raise _fail(source, f"fixed setting {name!r} is not a per-trial Config field")
        if name in search:
            raise _fail(source, f"{name} is both searched and fixed")
    for key, value in asha.items():
        if key not in ASHA_KEYS:
            raise _fail(source, f"unknown asha key {key!r}; allowed: {', '.join(ASHA_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(source, f"asha.{key} must be a positive whole number, got {value!r}")
    if asha.get("reduction_factor", 2) < 2:
        raise _fail(source, "asha.reduction_factor must be at least 2")
    try:  # the fixed values, and every value the search can draw, must make a valid Config too
        Config().replace(**fixed).validate()
        for name, spec in search.items():
            for value in spec.get("values", [spec.get("low"), spec.get("high")]):
                Config().replace(**fixed, **{name: value}).validate()
    except (TypeError, StudyError) as err:
        raise _fail(source, f"fixed settings: {err}") from err
    return SearchSpace(search=search, fixed=fixed, asha=asha, source=source)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` (no dot) as a string; learning rates are written that way, so read them as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def load_search_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"search space file not found: {path}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StudyError(f"invalid search space {path}: not valid YAML ({first})") from err
    return parse_search_space(raw, str(path))


def default_search_space_path(regime: str) -> Path:
    """`search_spaces/<regime>.yaml` of the checkout (the package sits next to that folder)."""
    return Path(__file__).resolve().parent.parent / "search_spaces" / f"{regime}.yaml"


# --- the searcher -------------------------------------------------------------------------------------
from optuna.trial import TrialState  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402


class AshaAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial ASHA stopped early as PRUNED, not COMPLETE.

    Ray's OptunaSearch tells Optuna every trial that ends without an error as COMPLETE with its last
    score, so a trial ASHA stopped after one epoch looks to TPE like a finished trial that scored
    poorly — and its early score is not comparable with finished ones. A trial that ends before
    `max_epochs` (and did not diverge, which is a real final result) was stopped by the scheduler:
    it is told PRUNED, keeping its per-epoch intermediate values, exactly as an Optuna pruner would.
    """

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if result and ot_trial is not None and trial_id not in self._completed_trials and self.metric in result:
            # Tune skips on_trial_result for the result on which a trial is stopped or ends, so that
            # epoch's score would be missing from the trial's intermediate values: record it here.
            step = result.get("training_iteration")
            if step is not None and step not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
                ot_trial.report(result[self.metric], step)
        stopped_early = (
            not error and result is not None and not result.get("diverged", False)
            and result.get("epoch", self._max_epochs) < self._max_epochs
        )
        if stopped_early and trial_id in self._ot_trials and trial_id not in self._completed_trials:
            self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


def optuna_storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(Path(study_dir) / 'optuna.db').resolve()}"


def make_searcher(study_dir: Path, regime: str, max_epochs: int, seed: int,
                  sampler: str = "tpe") -> AshaAwareOptunaSearch:
    """Seeded TPE (or random sampling, as a baseline), its study `<regime>` stored in
    `<study_dir>/optuna.db` for optuna.load_study and optuna-dashboard."""
    import optuna

    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    return AshaAwareOptunaSearch(
        metric="val_bleu", mode="max", max_epochs=max_epochs, study_name=regime,
        storage=optuna.storages.RDBStorage(optuna_storage_url(study_dir)),
        sampler=samplers[sampler](seed=seed),
    )


def make_scheduler(space: SearchSpace, max_epochs: int, grace_period: int | None, reduction_factor: int | None):
    """ASHA on val_bleu per epoch; flags beat the YAML, the YAML beats the defaults (1 and 2)."""
    from ray.tune.schedulers import ASHAScheduler

    grace = grace_period or space.asha.get("grace_period", 1)
    factor = reduction_factor or space.asha.get("reduction_factor", 2)
    return ASHAScheduler(time_attr="training_iteration", metric="val_bleu", mode="max",
                         max_t=max(max_epochs, 1), grace_period=min(grace, max(max_epochs, 1)),
                         reduction_factor=factor)
