"""Search spaces: the YAML files that say what Optuna samples per trial, validated before anything runs.

A search-space file (`search_spaces/<regime>.yaml`) has three sections:

    search:                      # what Optuna samples, per trial
      lr: {distribution: loguniform, low: 1.0e-4, high: 3.0e-3}
      batch_size: {distribution: choice, values: [16, 32, 64]}
      num_beams: {distribution: choice, values: [1, 4]}
    fixed: {warmup_ratio: 0.06}  # Config fields set for every trial of this regime
    asha: {grace_period: 1, reduction_factor: 2}  # and optionally min_results, rung_metric
    start: [{lr: 1.0e-3, batch_size: 16, num_beams: 4}]  # optional: points run first, then the sampler's
    beams: per_checkpoint        # or sampled (below)
    width: 2                     # optional: the search's width (below)

`beams` says how a trained regime chooses `num_beams` when its search lists several widths: `per_checkpoint` (the
default) scores every checkpoint at each width and keeps the best, so a trial trains once and the sampler proposes
only what changes training (lr, batch size); `sampled` makes the width a searched value like any other, each trial
training its own model for one width (the behaviour before; a regime that trains nothing always samples it).

`width` is how many of the regime's trials the search proposes and judges at once (`study.tuning.searcher`,
`search_width`): what each proposal and each rung knows, so part of the design and never the cluster's size.

`asha.rung_metric` is what ASHA compares trials by at a rung (`val_bleu_greedy`, the default, or `val_loss`);
`asha.min_results` is how many results a rung must hold before it judges the next arrival (default 1: ASHA's
own rule, under which the first trial at a rung always goes on and the second is judged against it alone).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from study.config import PER_TRIAL, Config, StudyError

DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")
SECTIONS = ("search", "fixed", "asha", "start", "beams", "width")
BEAM_MODES = ("per_checkpoint", "sampled")
ASHA_KEYS = ("grace_period", "reduction_factor", "min_results", "rung_metric")
# What ASHA may compare trials by at its rungs (study.tuning.searcher.RUNG_METRICS: name -> mode).
RUNG_METRICS = ("val_bleu_greedy", "val_loss")


@dataclass
class SearchSpace:
    search: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    asha: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # Points the search runs first (Optuna's enqueued trials, Tune's `points_to_evaluate`): known-good settings
    # a sampler then learns from; every value inside the search's own ranges.
    start: list[dict[str, Any]] = field(default_factory=list)
    beams: str = "per_checkpoint"  # how a trained regime picks num_beams among several widths (BEAM_MODES)
    # The search's width: how many of the regime's trials are proposed and judged at once (trial k proposed knowing
    # trials 0..k-width; ASHA judges trial n against trials n-width and earlier). Part of the search design, the
    # same on every machine: None takes `study.tuning.searcher.search_width`'s default.
    width: int | None = None

    def beam_widths(self) -> tuple[int, ...]:
        """The widths every checkpoint is scored at (`beams: per_checkpoint` and num_beams a choice of several);
        empty when num_beams is sampled, fixed or not searched."""
        spec = self.search.get("num_beams")
        if self.beams != "per_checkpoint" or not spec or spec["distribution"] != "choice" or len(spec["values"]) < 2:
            return ()
        return tuple(sorted(spec["values"]))

    def sampled(self, trains: bool = True) -> dict[str, dict[str, Any]]:
        """What the sampler proposes: the search less the widths scored per checkpoint (a regime that trains
        nothing samples every value: each of its trials is one evaluation anyway)."""
        skip = {"num_beams"} if trains and self.beam_widths() else set()
        return {name: spec for name, spec in self.search.items() if name not in skip}

    def trial_base(self, trains: bool = True) -> dict[str, Any]:
        """Config settings every trial of the regime gets: the fixed values, and the widths to score per checkpoint."""
        widths = self.beam_widths() if trains else ()
        return {**self.fixed, **({"val_beams": widths} if widths else {})}

    def start_points(self, trains: bool = True) -> list[dict[str, Any]]:
        """The start points as the sampler sees them (without a width scored per checkpoint)."""
        names = self.sampled(trains)
        return [{k: v for k, v in point.items() if k in names} for point in self.start]

    def tune_space(self, trains: bool = True) -> dict[str, Any]:
        """The `param_space` for `tune.Tuner`: Tune's own domain objects, which OptunaSearch converts."""
        from ray import tune

        space: dict[str, Any] = {}
        for name, spec in self.sampled(trains).items():
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

    def grid_size(self) -> int:
        """How many distinct points the space has: the product of its choices' sizes, or 10**9 (as good as
        unbounded) once any hyperparameter is continuous or an integer range."""
        size = 1
        for spec in self.search.values():
            if spec["distribution"] != "choice":
                return 10**9
            size *= len(spec["values"])
        return size

    def grid_points(self) -> list[dict[str, Any]] | None:
        """Every point of a space of choices only (None if any hyperparameter is continuous or a range)."""
        import itertools

        if any(spec["distribution"] != "choice" for spec in self.search.values()):
            return None
        names = list(self.search)
        return [dict(zip(names, values)) for values in itertools.product(*(self.search[n]["values"] for n in names))]


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
        if name not in PER_TRIAL:
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
        if name not in PER_TRIAL:
            raise _fail(source, f"fixed setting {name!r} is not a per-trial Config field")
        if name in search:
            raise _fail(source, f"{name} is both searched and fixed")
    for key, value in asha.items():
        if key not in ASHA_KEYS:
            raise _fail(source, f"unknown asha key {key!r}; allowed: {', '.join(ASHA_KEYS)}")
        if key == "rung_metric":
            if value not in RUNG_METRICS:
                raise _fail(source, f"asha.rung_metric must be one of {', '.join(RUNG_METRICS)}, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(source, f"asha.{key} must be a positive whole number, got {value!r}")
    if asha.get("reduction_factor", 2) < 2:
        raise _fail(source, "asha.reduction_factor must be at least 2")
    width = raw.get("width")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise _fail(source, f"width must be a positive whole number of trials, got {width!r}")
    beams = raw.get("beams", "per_checkpoint")
    if beams not in BEAM_MODES:
        raise _fail(source, f"beams must be one of {', '.join(BEAM_MODES)}, got {beams!r}")
    start = raw.get("start") or []
    if not isinstance(start, list) or not all(isinstance(p, dict) for p in start):
        raise _fail(source, "start must be a list of mappings, e.g. [{lr: 1.0e-3, batch_size: 16}]")
    for point in start:
        # num_beams scored per checkpoint may be left out of a start point (every width is tried anyway)
        optional = {"num_beams"} if beams == "per_checkpoint" else set()
        if not set(search) - optional <= set(point) <= set(search):
            raise _fail(source, f"start point {point} must set exactly the searched {', '.join(search)}")
        for name, value in point.items():
            spec = search[name]
            inside = (value in spec["values"]) if spec["distribution"] == "choice" else (
                isinstance(value, (int, float)) and not isinstance(value, bool) and spec["low"] <= value <= spec["high"])
            if not inside:
                raise _fail(source, f"start point {point}: {name}={value!r} is outside the search's range")
    try:  # the fixed values, and every value the search can draw, must make a valid Config too
        Config().replace(**fixed)  # a Config checks itself when it is made
        for name, spec in search.items():
            for value in spec.get("values", [spec.get("low"), spec.get("high")]):
                Config().replace(**fixed, **{name: value})
    except (TypeError, StudyError) as err:
        raise _fail(source, f"fixed settings: {err}") from err
    return SearchSpace(search=search, fixed=fixed, asha=asha, source=source, start=start, beams=beams, width=width)


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
    """The bundled `search_spaces/<regime>.yaml`, as package data: `study/search_spaces` links to the checkout's
    top-level folder, and an installed copy (`pip install .`) holds the files themselves. A checkout whose
    link did not survive (git on Windows without symlinks) still finds the top-level folder."""
    package = Path(__file__).resolve().parents[1] / "search_spaces" / f"{regime}.yaml"
    checkout = Path(__file__).resolve().parents[2] / "search_spaces" / f"{regime}.yaml"
    return package if package.is_file() or not checkout.is_file() else checkout
