"""A damaged study file is named, never a traceback: a truncated or invalid JSON file, a corrupt optuna.db, a
half-written model folder each get one line saying which file and what to do, a non-zero exit where the command
cannot go on, and the damaged file is left exactly as it was (never rewritten, never deleted).

Every command runs on a copy of the session's finished pruning study (tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from study import analyze, evaluate, translate
from study import run as study_run

pytestmark = pytest.mark.slow  # reads the session's Ray study


@pytest.fixture
def study(pruning_study, tmp_path) -> Path:
    return Path(shutil.copytree(pruning_study.path, tmp_path / "results" / pruning_study.path.name))


def _one_error_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _damage(path: Path, content: bytes) -> bytes:
    path.write_bytes(content)
    return content


@pytest.mark.parametrize("damage", [b'{"regime": "scratch", "best_val', b"[1, 2, 3]\n", b"\xff\xfe not utf-8"])
def test_a_damaged_best_json_is_named_by_analyze_and_translate_and_left_as_it_is(study, capsys, damage):
    best = study / "scratch" / "best.json"
    before = _damage(best, damage)
    assert analyze.main([str(study)]) == 2  # not "unfinished (no best.json yet)" with exit 0
    _one_error_line(capsys, str(best), "damaged" if damage.startswith((b"{", b"[")) else "cannot be read")
    assert translate.main([str(study), "the cat sleeps"]) == 2
    _one_error_line(capsys, str(best))
    assert best.read_bytes() == before


def test_a_damaged_study_json_stops_resume_with_its_name(study, capsys):
    record = study / "study.json"
    before = _damage(record, record.read_bytes()[:40])
    assert study_run.main(["--resume", study.name, "--results", str(study.parent)]) == 2
    _one_error_line(capsys, str(record), "not valid JSON")
    assert record.read_bytes() == before


def test_a_corrupt_optuna_db_stops_resume_and_the_report_goes_on_without_importances(study, capsys):
    db = study / "optuna.db"
    before = _damage(db, b"this is not an SQLite database, only its name" * 100)
    assert study_run.main(["--resume", study.name, "--results", str(study.parent)]) == 2
    _one_error_line(capsys, str(db), "not an SQLite database")
    assert analyze.main([str(study)]) == 0  # the analysis can go on: only fANOVA reads optuna.db
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if str(db) in line][0].startswith("warning:")
    assert "optuna.db is damaged" in (study / "report.md").read_text(encoding="utf-8")
    assert db.read_bytes() == before


def test_a_half_written_model_folder_is_named_by_translate_and_evaluate(study, capsys, tmp_path):
    weights = study / "scratch" / "model" / "model.safetensors"
    before = _damage(weights, weights.read_bytes()[:1000])
    assert translate.main([str(study), "the cat sleeps"]) == 2
    _one_error_line(capsys, str(study / "scratch" / "model"), "damaged or half-written")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("the cat sleeps\tle chat dort\n", encoding="utf-8")
    assert evaluate.main([str(study), "--data", str(pairs)]) == 2
    _one_error_line(capsys, str(study / "scratch" / "model"))
    assert weights.read_bytes() == before


def test_a_study_interrupted_before_its_export_exports_on_resume(study, capsys):
    """A regime scored (best.json written) but not yet exported when the study was stopped: `--resume` exports
    it from the checkpoint best.json names, and leaves the scores as they were."""
    best = study / "scratch" / "best.json"
    scores = best.read_bytes()
    reference = (study / "scratch" / "model" / "config.json").read_text()
    shutil.rmtree(study / "scratch" / "model")
    assert study_run.main(["--resume", study.name, "--results", str(study.parent), "--no-analysis"]) == 0
    assert (study / "scratch" / "model" / "config.json").read_text() == reference
    assert translate.main([str(study), "the cat sleeps"]) == 0 and capsys.readouterr().out.strip()
    assert best.read_bytes() == scores
