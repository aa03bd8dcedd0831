"""Shared fixtures: an offline T5 tokenizer trained in seconds, and paths to the optional `../shared` material."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

# Ray (>= 2.48) no longer hides the GPUs from a trial that asked for none; the tests' Ray trials ask for none
# (`--gpus-per-trial 0`) and must run on the CPU on every machine, GPU or not, as they do on a CPU-only one.
# Set before any test starts Ray, in-process or as a subprocess, so every raylet and worker inherits it.
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")

# The suite runs on pytest-xdist workers (pyproject's addopts). `ray.init()` joins the cluster recorded under
# Ray's temp dir when there is one, so each worker gets a temp dir of its own: a Ray started by one worker's
# test is never joined by another's study. (Short paths: Ray's socket paths live under it.)
if _worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["RAY_TMPDIR"] = f"/tmp/ray-{_worker}"
    os.makedirs(os.environ["RAY_TMPDIR"], exist_ok=True)

# Tests are handed to workers a module at a time (`--dist loadgroup`, one group per module), so a module's
# fixtures are built once; modules that share a session fixture share a group, so it is built once too.
SHARED_GROUPS = {"test_study": "pruning_study", "test_analyze": "pruning_study",
                 "test_user_outputs": "pruning_study", "test_damaged_files": "pruning_study"}
# The groups that run whole Ray studies, longest first (as measured on a 2-core machine), are handed out
# before the rest (pyproject passes --no-loadscope-reorder, so this order is the order workers get them):
# the many short modules then fill in while the last long ones run, instead of a long one running alone at
# the end. Only the order depends on this list: a group missing from it runs later, never not at all.
LONGEST_FIRST = ("pruning_study", "test_cluster_width", "test_resume", "test_checkpoints", "test_side_by_side", "test_cluster",
                 "test_paper_path", "test_autoscale", "test_regimes_e2e", "test_conclusions", "test_benchmarks",
                 "test_regimes_extra", "test_selection")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config, items):
    def group(item) -> str:
        return item.get_closest_marker("xdist_group").args[0]

    for item in items:
        if not item.get_closest_marker("xdist_group"):
            module = item.module.__name__.rpartition(".")[2]
            item.add_marker(pytest.mark.xdist_group(SHARED_GROUPS.get(module, module)))
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group(item), len(rank)))  # stable: file order within a rank


SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_T5 = SHARED / "t5-small"
SHARED_PAIRS = SHARED / "data" / "eng-fra.tsv"

EN_WORDS = ("the a my your this that cat dog house car tree book child woman man friend teacher city river "
       "is was will be has have sees likes wants eats reads finds big small red blue green old new happy "
       "quickly today yesterday here there very not and with in on under near I you we they he she").split()
FR_WORDS = ("le la les un une mon ma ton ta ce cette chat chien maison voiture arbre livre enfant femme homme "
       "ami professeur ville rivière est était sera a ont voit aime veut mange lit trouve grand petit rouge "
       "bleu vert vieux nouveau heureux été très café élève où déjà même à ça garçon fenêtre forêt "
       "aujourd'hui hier ici là ne pas et avec dans sur sous près je tu nous ils il elle").split()


def tiny_sentences(n: int, seed: int = 0) -> list[str]:
    """Short English and French sentences (with accents and punctuation) from a fixed word list."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = EN_WORDS if i % 2 else FR_WORDS
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(2, 12)))
        sentence = sentence[0].upper() + sentence[1:] + rng.choice([".", " ?", " !", "."])
        out.append("translate English to French: " + sentence if i % 4 == 1 else sentence)
    return out


def build_t5_tokenizer(directory: Path, sentences: list[str], vocab_size: int = 300):
    """Train a SentencePiece unigram model with T5's ids (pad 0, eos 1, unk 2, no bos) and load it as T5Tokenizer.

    transformers 5 converts `spiece.model` found in a directory into its fast (tokenizers) T5Tokenizer
    and appends the 100 `<extra_id_N>` sentinels, as for t5-small.
    """
    import sentencepiece as spm
    from transformers import T5Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(directory / "spiece"), vocab_size=vocab_size,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        hard_vocab_limit=False, minloglevel=2,
    )
    return T5Tokenizer.from_pretrained(str(directory))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Code under test may set torch's thread count (a benchmark's --threads, a trial's torch_threads):
    later tests, whatever their order, start from the count this process began with."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _stderr_free_of_earlier_ray_workers(request):
    """An in-process study keeps its local Ray up (start_ray), and its workers' last lines reach the driver's
    stderr later, through Ray's log thread, into whatever test then runs in this process. A test that reads
    stderr (capsys) starts with that Ray shut down -- which joins the log thread and flushes its lines -- and
    with those lines dropped, so it sees only what its own code printed."""
    import sys

    if "capsys" in request.fixturenames and "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        request.getfixturevalue("capsys").readouterr()
    yield


@pytest.fixture(scope="session")
def spm_tokenizer(tmp_path_factory):
    """A T5Tokenizer over a ~300-piece SentencePiece model trained offline on generated English/French."""
    return build_t5_tokenizer(tmp_path_factory.mktemp("spm"), tiny_sentences(3000))


@pytest.fixture(scope="session")
def t5_small_tokenizer():
    """The real t5-small tokenizer from ../shared; tests using it skip when it is absent."""
    if not (SHARED_T5 / "spiece.model").exists():
        pytest.skip(f"{SHARED_T5} not present")
    from transformers import T5Tokenizer

    return T5Tokenizer.from_pretrained(str(SHARED_T5))


# -------------------------------------------------------------- the tiny models and the pairs files tests train on

# The model the Ray studies' tests search over: a good learning rate visibly learns the grammar corpus in 2-3
# epochs and a bad one does not, which the pruning and selection tests rely on.
TINY_MODEL = dict(tiny_d_model=64, tiny_layers=2, tiny_heads=4, tiny_d_ff=128, tiny_vocab_size=500)
# The smallest model the in-process tests train: seconds per epoch, enough to see a loss fall.
SMALL_MODEL = dict(tiny_d_model=32, tiny_layers=1, tiny_heads=2, tiny_d_ff=64, tiny_vocab_size=300)


def cli_flags(settings: dict) -> list[str]:
    """Config fields as the CLIs' flags: {"tiny_d_model": 64} -> ["--tiny-d-model", "64"]."""
    return [part for key, value in settings.items() for part in (f"--{key.replace('_', '-')}", str(value))]


TINY_FLAGS = cli_flags(TINY_MODEL)
SMALL_FLAGS = cli_flags(SMALL_MODEL)


def write_pairs(path: Path, n: int, seed: int = 0) -> Path:
    """`n` pairs of the bundled grammar corpus (`corpus.generate_pairs(n, seed)`) as a TSV at `path`."""
    from study.data.sample import corpus

    path.write_text("".join(f"{en}\t{fr}\n" for en, fr in corpus.generate_pairs(n, seed=seed)), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ one real pruning study, shared

# The Ray tests' study flags: the tiny model, on the CPU whatever the machine has (trials ask for no GPU).
STUDY_FLAGS = [*TINY_FLAGS, "--max-eval-pairs", "60", "--device", "cpu", "--gpus-per-trial", "0",
               # no seed re-runs of the best trial (the quick preset's 2): these tests read the search alone
               "--seeds", "1"]
PRUNING_EPOCHS = 3


def write_space(path: Path, lrs: list[float], fixed: str = "{batch_size: 16}") -> Path:
    """A search space over `lr` only (greedy decoding, `fixed` settings), ASHA stopping after one epoch."""
    path.write_text("search:\n"
                    f"  lr: {{distribution: choice, values: {lrs}}}\n"
                    "  num_beams: {distribution: choice, values: [1]}\n"
                    f"fixed: {fixed}\n"
                    "asha: {grace_period: 1, reduction_factor: 2}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def study_pairs(tmp_path_factory) -> Path:
    """1,500 pairs of the bundled grammar corpus: what the Ray study tests search on (their tokenizer is
    cached once, in `cache` beside them)."""
    return write_pairs(tmp_path_factory.mktemp("study-pairs") / "pairs.tsv", 1500)


def study_argv(pairs: Path, results: Path, name: str, space: Path, samples: int, epochs: int, cache: Path,
               seed: int = 0) -> list[str]:
    return ["--regime", "scratch", "--data", str(pairs), "--results", str(results), "--name", name,
            "--cache-dir", str(cache), "--search-space", str(space), "--num-samples", str(samples),
            "--max-epochs", str(epochs), "--max-concurrent", "1", "--seed", str(seed), "--no-analysis", *STUDY_FLAGS,
            # random draws seeded with --seed itself: the lr order the studies below rely on (TPE would learn)
            "--searcher", "random", "--same-draws"]


@dataclass
class PruningStudy:
    path: Path  # results/<name>: the study's folder
    output: str  # what the study printed
    mlflow: str | None  # the MLflow tracking URI it logged to (--mlflow), None when MLflow is not installed


@pytest.fixture(scope="session")
def pruning_study(tmp_path_factory, study_pairs) -> PruningStudy:
    """One real study of `scratch`, run once per session and read (never changed) by the study, analysis and
    user-output tests: a learning rate that learns and one that cannot; random draws seeded 0 give bad, good,
    bad, bad, so once the good trial has set the first rung ASHA stops the later bad ones."""
    import contextlib
    import importlib.util
    import io

    from study.run import main as run_main

    root = tmp_path_factory.mktemp("pruning")
    space = write_space(root / "space.yaml", [3e-3, 1e-6])
    # logged to MLflow too where it is installed (the `mlflow` extra): tests/test_user_outputs.py reads it back
    mlflow = f"file:{root / 'mlruns'}" if importlib.util.find_spec("mlflow") else None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_main(study_argv(study_pairs, root / "results", "pruned", space, 4, PRUNING_EPOCHS,
                                  study_pairs.parent / "cache") + (["--mlflow", mlflow] if mlflow else []))
    assert code == 0, out.getvalue()[-3000:]
    return PruningStudy(root / "results" / "pruned", out.getvalue(), mlflow)


def optuna_trials_in(db: Path, states: tuple[str, ...]) -> int:
    """Trials of a study's optuna.db in `states` (e.g. "COMPLETE", "PRUNED"), read from a read-only
    connection while its driver may still be creating or writing it: `optuna.load_study` would open the
    file for writing (creating tables, stamping the schema version) and can make the driver's own
    RDBStorage fail on a duplicate version row."""
    import sqlite3

    if not db.exists():
        return 0
    marks = ", ".join("?" * len(states))
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM trials WHERE state IN ({marks})", states).fetchone()[0]
    except sqlite3.Error:  # the driver has not created the tables yet
        return 0
