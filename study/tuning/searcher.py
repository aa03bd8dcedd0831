"""The Optuna sampler and searcher and the ASHA scheduler of one regime's search.

The sampler is meant to *learn* within a study's small budget (a few to a few dozen trials per regime):
- TPE's random start is sized to the trials (`startup_trials`), not Optuna's default of 10, which is
  more than the quick and paper presets run, so that no trial would ever have been proposed by TPE;
- multivariate TPE, because lr and batch size interact (a larger batch takes fewer, larger steps);
- the constant liar, because trials run at once: a running trial counts as a bad result, so two
  proposals made while it runs do not land on the same point;
- each regime's seed derived from the study seed and the regime's name (`regime_seed`): regimes with
  the same search space (decoder, full) would otherwise draw the same random start. `same_draws`
  keeps the study seed for every regime (common random numbers: the regimes' first trials then differ
  only by regime, a valid design when it is stated).

ASHA and Optuna do not rank by the same score: see `METRIC` and `RUNG_METRIC`. Ray's private state
that the searcher relies on is reached only through `study.tuning.internals`.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from study.common import content_hash
from study.config import StudyError
from study.tuning import internals
from study.tuning.space import SearchSpace
from study.tuning.trials import PRUNED, ended_as, trial_number

# What Optuna optimises and the best trial is chosen by: validation BLEU at the trial's own num_beams, or at the
# best of the widths its space lists when each checkpoint is scored at every width (`beams: per_checkpoint`):
# beams are part of the configuration a user would deploy.
METRIC, MODE = "val_bleu", "max"
# What ASHA compares at its rungs: validation BLEU with greedy decoding. A rung decides whether a trial's
# *training* (lr, batch size) deserves more epochs; beams do not change training, but they shift BLEU by
# an amount that depends on how far training has got, so ranking a beam-4 trial against a greedy one at
# epoch 1 would compare decoders, not training runs. (For a greedy trial the two scores are the same.)
RUNG_METRIC = "val_bleu_greedy"
# The rung metrics a search space may choose (`asha.rung_metric`) and whether more is better.
RUNG_METRICS = {"val_bleu_greedy": "max", "val_loss": "min"}
SAMPLERS = ("tpe", "random", "gp")


class AshaAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records a trial ASHA stopped early as PRUNED, not COMPLETE, and with `at_once` proposes
    each trial from the same finished trials however fast the trials ran.

    Ray's OptunaSearch tells Optuna every trial that ends without an error as COMPLETE with its last
    score, so a trial ASHA stopped after one epoch looks to TPE like a finished trial that scored
    poorly — and its early score is not comparable with finished ones. A trial that ends before
    `max_epochs` (and did not diverge, which is a real final result) was stopped by the scheduler:
    it is told PRUNED, keeping its per-epoch intermediate values, exactly as an Optuna pruner would.

    A trial that ran its whole budget is told its *best* epoch's score, not its last: the study selects a
    trial by its best epoch (`study.tuning.best`), so that is the objective TPE must model.

    Proposals in trial order (`at_once`, the search's trials at once, and `planned`, its trials in all): Optuna
    proposes trial k (0-based) knowing exactly trials 0 .. k - at_once finished, the later ones still running (the
    constant liar's "running"), and trial k starts only once those have ended (`suggest` answers None meanwhile
    and Tune asks again). A trial that ends sooner is told to Optuna only when its turn comes. So the proposals
    depend on the trials' results, never on which trial happened to report first — which, with regimes sharing
    two slots, changed from run to run and with it the configuration a study picked. Without `at_once` a trial is
    told as it ends (Ray's way). The cost: a slot may wait for an earlier trial to end (another regime's trials
    take it meanwhile).

    Resumed (Tune restores it from the experiment's last snapshot, which optuna.db may have outrun): its start points
    are enqueued once (`internals.enqueue_once`), the trials it asked for after the snapshot go back to Optuna's queue
    to be asked again (`internals.requeue_lost_trials`), and a trial told FAIL that Tune continues is told again how
    it ends (`_continued`); it keeps the trials-at-once limit itself (`set_max_concurrency`).
    """

    # Defaults for a searcher unpickled from a study begun before these existed (Tune's pickles skip __init__)
    _asked_by: str | None = None
    _max_running: int | None = None

    def __init__(self, *args: Any, max_epochs: int, at_once: int | None = None, planned: int | None = None,
                 **kwargs: Any) -> None:
        # before OptunaSearch's own __init__, which may set up the study (enqueueing the start points, marked by it)
        self._asked_by = uuid.uuid4().hex  # marks this searcher's Optuna trials (kept by Tune's pickles of it)
        super().__init__(*args, **kwargs)
        internals.check_ray_internals(self)
        self._max_epochs = max_epochs
        self._at_once, self._planned = at_once, planned
        self._started: list[str] = []  # trial ids in the order proposed (saved with the searcher: Tune pickles it)
        self._ended: dict[str, tuple[dict | None, bool]] = {}  # ended but not told to Optuna yet: (result, error)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Take over the trials-at-once limit from Tune's ConcurrencyLimiter (`max_concurrent_trials`), which forgets
        an errored trial and so drops what it reports once `--resume` continues it (`resume_errored`)."""
        self._max_running = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict | None:
        running = [t for t in self._ot_trials if t not in self._ended and not internals.is_completed(self, t)]
        if self._max_running and len(running) >= self._max_running:
            return None
        if self._at_once:
            k = len(self._started)
            seen = self._started[:max(0, k - self._at_once + 1)]  # trials 0 .. k - at_once
            if any(t not in self._ended and not internals.is_completed(self, t) for t in seen):
                return None  # one of them still runs
            self._tell(seen)
        suggestion = super().suggest(trial_id)
        if isinstance(suggestion, dict):  # not None (not ready) nor Searcher.FINISHED
            internals.mark_asked(self, trial_id)
            self._started.append(trial_id)
        return suggestion

    def _setup_study(self, mode) -> None:
        points, self._points_to_evaluate = self._points_to_evaluate, None
        try:
            super()._setup_study(mode)
        finally:
            self._points_to_evaluate = points
        internals.enqueue_once(self, points)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        internals.requeue_lost_trials(self)

    def _continued(self, trial_id: str) -> None:
        """A trial told FAIL that reports again is one Tune continues after its error (`--resume`'s
        `resume_errored`): Optuna hears how it goes on and ends (`internals.reopen_failed`), not the error."""
        if internals.reopen_failed(self, trial_id):
            self._ended.pop(trial_id, None)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._continued(trial_id)
        super().on_trial_result(trial_id, result)
        self._record_width(trial_id, result)

    def _record_width(self, trial_id: str, result: dict | None) -> None:
        """A trial that scores every beam width per checkpoint (`num_beams_best` in its results) has its width
        recorded in Optuna per epoch (user attribute `num_beams@<epoch>`) and, at its best epoch so far, as the
        trial's `num_beams`: what optuna-dashboard and `optuna.load_study` show, though the sampler never proposed it."""
        ot_trial = internals.optuna_trial(self, trial_id)
        step = (result or {}).get("training_iteration")
        if ot_trial is None or step is None or result.get("num_beams_best") is None \
                or internals.is_completed(self, trial_id):
            return
        storage, number = ot_trial.storage, ot_trial._trial_id
        storage.set_trial_user_attr(number, f"num_beams@{step}", int(result["num_beams_best"]))
        scores = internals.intermediate_values(ot_trial)
        if scores:
            best = max(scores, key=scores.get) if self.mode == "max" else min(scores, key=scores.get)
            width = storage.get_trial(number).user_attrs.get(f"num_beams@{best}")
            if width is not None:
                storage.set_trial_user_attr(number, "num_beams", width)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if not error:  # a continued trial may end without a new result (it had reported its last epoch)
            self._continued(trial_id)
        if not self._at_once or trial_id not in self._started:
            self._tell_ended(trial_id, result, error)
            return
        self._ended[trial_id] = (result, error)
        if self._planned is None or len(self._started) >= self._planned:  # no proposal left to wait for it
            self._tell(self._started)

    def _tell(self, trial_ids: list[str]) -> None:
        """Tell Optuna, in trial order, those of `trial_ids` that have ended and are not told yet."""
        for trial_id in trial_ids:
            if trial_id in self._ended:
                self._tell_ended(trial_id, *self._ended.pop(trial_id))

    def _tell_ended(self, trial_id: str, result: dict | None, error: bool) -> None:
        ot_trial = internals.optuna_trial(self, trial_id)
        done = internals.is_completed(self, trial_id)
        if result and ot_trial is not None and not done and self.metric in result:
            # Tune skips on_trial_result for the result on which a trial is stopped or ends, so that
            # epoch's score would be missing from the trial's intermediate values: record it here.
            step = result.get("training_iteration")
            if step is not None and step not in internals.intermediate_steps(ot_trial):
                ot_trial.report(result[self.metric], step)
                self._record_width(trial_id, result)
        if ot_trial is not None and not done and ended_as(result, self._max_epochs, errored=error) == PRUNED:
            internals.tell_pruned(self, trial_id)
            return
        if result and ot_trial is not None and not done and self.metric in result:
            scores = internals.intermediate_values(ot_trial).values()
            result = {**result, self.metric: max(scores) if self.mode == "max" else min(scores)}
        super().on_trial_complete(trial_id, result, error)


def optuna_storage_url(study_dir: Path) -> str:
    return f"sqlite:///{(Path(study_dir) / 'optuna.db').resolve()}"


# Regimes searched side by side open optuna.db from several driver threads: the first opening creates its tables
# (two at once fail with "table studies already exists"), and a write waits for another's lock up to 60 s
# instead of sqlite's 5 s.
_OPENING = threading.Lock()


def optuna_storage(study_dir: Path):
    """The study's optuna.db as Optuna storage, safe to open and write from several threads."""
    import optuna

    with _OPENING:
        return optuna.storages.RDBStorage(optuna_storage_url(study_dir), engine_kwargs={"connect_args": {"timeout": 60}})


def startup_trials(n_trials: int) -> int:
    """TPE's random start for a regime of `n_trials`: a quarter of them, and at least 2.

    TPE splits the finished trials into a good and a bad group and proposes where good is likelier than
    bad, so it needs at least one of each (hence 2). A quarter keeps a coarse random cover of the space
    and leaves three quarters to the model: 8 trials -> 2 random, 6 proposed; 40 -> 10 (Optuna's
    default). The start counts *finished* trials, so with c trials at once about c - 1 more are drawn
    at random while the first ones run."""
    return max(2, n_trials // 4)


# The search's width when a space does not set one (`width`): two trials of a regime at once, what the design was
# chosen at (benchmarks/search_replay.py --concurrency 2), and never more than a third of the planned trials.
DEFAULT_WIDTH = 2


def search_width(space: SearchSpace, n_trials: int) -> int:
    """How many of the regime's `n_trials` trials the search proposes and judges at once: the space's `width`, or
    DEFAULT_WIDTH capped at a third of the trials. Set by the design, not the cluster: more machines run more
    regimes, seed runs and studies at once, never a different search. A width above a third of the trials is
    refused: the first `width` trials pass every rung unjudged and trial k is proposed knowing only 0..k-width."""
    third = max(1, n_trials // 3)
    if space.width is None:
        return min(DEFAULT_WIDTH, third)
    if space.width > third:
        raise StudyError(f"search width {space.width} in {space.source or 'the search space'} is above a third of the "
                         f"{n_trials} planned trials: its first {space.width} trials could never be stopped early and "
                         f"each proposal would know {space.width - 1} fewer finished trials; set width to at most "
                         f"{third} or plan at least {3 * space.width} trials")
    return space.width


def regime_seed(study_seed: int, regime: str, same_draws: bool = False) -> int:
    """The sampler seed of `regime`: stable across runs and machines (a hash, not Python's salted hash()),
    different per regime; the study seed itself with `same_draws` (common random numbers)."""
    if same_draws:
        return study_seed
    return int(content_hash([str(study_seed), regime], length=8), 16)  # 32 bits: numpy's seed range


def planned_trials(trains: bool, num_samples: int, space: SearchSpace) -> int:
    """Trials a regime runs: the budget's, or for a regime that trains nothing (only decoding is searched)
    at most one per point of its grid."""
    return num_samples if trains else min(num_samples, space.grid_size())


def sampler_settings(searcher: str, regime: str, n_trials: int, study_seed: int, same_draws: bool = False,
                     trains: bool = True) -> dict:
    """Everything that defines a regime's sampler, as recorded in study.json and built by `make_sampler`.
    A regime that trains nothing runs its grid's points, enqueued (`grid_points`): the sampler proposes none."""
    if searcher not in SAMPLERS:
        raise StudyError(f"unknown searcher {searcher!r}; use one of {', '.join(SAMPLERS)}")
    settings: dict[str, Any] = {"sampler": searcher, "seed": regime_seed(study_seed, regime, same_draws),
                                "same_draws": same_draws, "trials": n_trials}
    if not trains:
        settings["enqueued_grid_points"] = n_trials
    if searcher == "tpe":
        settings.update(n_startup_trials=startup_trials(n_trials), multivariate=True, constant_liar=True)
    elif searcher == "gp":
        settings.update(n_startup_trials=startup_trials(n_trials))
    return settings


def make_sampler(settings: dict):
    """The Optuna sampler `settings` (from `sampler_settings`) describe."""
    import optuna

    if settings["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=settings["seed"])
    if settings["sampler"] == "gp":
        return optuna.samplers.GPSampler(seed=settings["seed"], n_startup_trials=settings["n_startup_trials"])
    return optuna.samplers.TPESampler(seed=settings["seed"], n_startup_trials=settings["n_startup_trials"],
                                      multivariate=settings["multivariate"],
                                      constant_liar=settings["constant_liar"])


def make_searcher(study_dir: Path, regime: str, max_epochs: int, sampler: dict,
                  points_to_evaluate: list[dict] | None = None, at_once: int | None = None,
                  planned: int | None = None) -> AshaAwareOptunaSearch:
    """The sampler `sampler` (from `sampler_settings`) behind Ray's OptunaSearch, its study `<regime>`
    stored in `<study_dir>/optuna.db` for optuna.load_study and optuna-dashboard; `points_to_evaluate`
    are enqueued to run first (a regime that trains nothing walks its whole grid of decoding choices:
    drawn at random, its 2 trials could both pick the same num_beams).

    OptunaSearch takes the sampler as it is (its own `seed` argument applies only to the default sampler
    it would build) and asks it through `study.ask(fixed_distributions=...)`; its trials stay RUNNING in
    the storage until told, which is what the constant liar reads. `at_once`, `planned`: proposals in trial
    order (`AshaAwareOptunaSearch`)."""

    return AshaAwareOptunaSearch(
        metric=METRIC, mode=MODE, max_epochs=max_epochs, at_once=at_once, planned=planned, study_name=regime,
        storage=optuna_storage(study_dir),
        sampler=make_sampler(sampler), points_to_evaluate=points_to_evaluate,
    )


def scheduler_settings(space: SearchSpace, max_epochs: int, grace_period: int | None = None,
                       reduction_factor: int | None = None) -> dict:
    """ASHA's settings for a regime: flags beat the YAML, the YAML beats the defaults (greedy val BLEU, rungs
    from epoch 1, factor 2, a rung judges from its first recorded result on)."""
    return {"rung_metric": space.asha.get("rung_metric", RUNG_METRIC),
            "grace_period": min(grace_period or space.asha.get("grace_period", 1), max(max_epochs, 1)),
            "reduction_factor": reduction_factor or space.asha.get("reduction_factor", 2),
            "min_results": space.asha.get("min_results", 1), "max_t": max(max_epochs, 1)}


class TrialOrderASHA(ASHAScheduler):
    """ASHA whose decisions do not depend on the order in which trials report.

    Ray's ASHA judges a trial at a rung against whatever results reached the rung before it, so two runs of one
    study stop different trials when their trials report in another order (regimes sharing the slots, a busier
    machine). Here trial n (the experiment's n-th, its number in Tune's tag) is judged against the results of
    trials n - at_once and earlier alone: exactly the trials that had ended when it started, since the searcher
    starts trial n only then (`AshaAwareOptunaSearch` with the same `at_once`). The first `at_once` trials pass
    every rung, as the first arrival does in Ray's ASHA."""

    def __init__(self, *args: Any, at_once: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at_once = at_once
        self.numbers: dict[str, int] = {}  # trial id -> its number (kept by Tune's pickle of the scheduler)
        self.judged: int | None = None  # the number of the trial being judged, while it is

    def _number(self, trial) -> int | None:
        """The trial's number, remembered (a restored search's trials are numbered by `restore_asha_rungs`)."""
        if trial.trial_id not in self.numbers and trial_number(trial) is not None:
            self.numbers[trial.trial_id] = trial_number(trial)
        return self.numbers.get(trial.trial_id)

    def on_trial_add(self, tune_controller, trial) -> None:
        self._number(trial)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        self.judged = self._number(trial)
        try:
            return super().on_trial_result(tune_controller, trial, result)
        finally:
            self.judged = None

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self.judged = self._number(trial)
        try:
            super().on_trial_complete(tune_controller, trial, result)
        finally:
            self.judged = None


def make_scheduler(space: SearchSpace, max_epochs: int, grace_period: int | None, reduction_factor: int | None,
                   at_once: int | None = None):
    """ASHA per epoch on the regime's rung metric (`scheduler_settings`); with `at_once`, judging in trial order
    (`TrialOrderASHA`)."""
    settings = scheduler_settings(space, max_epochs, grace_period, reduction_factor)
    kwargs = {"time_attr": "training_iteration", "metric": settings["rung_metric"],
              "mode": RUNG_METRICS[settings["rung_metric"]], "max_t": settings["max_t"],
              "grace_period": settings["grace_period"], "reduction_factor": settings["reduction_factor"]}
    scheduler = TrialOrderASHA(**kwargs, at_once=at_once) if at_once else ASHAScheduler(**kwargs)
    if settings["min_results"] > 1:
        internals.require_rung_results(scheduler, settings["min_results"])
    if at_once:  # outside min_results' wrapper, so that it counts the earlier trials alone
        internals.judge_rungs_by_earlier_trials(scheduler)
    return scheduler
