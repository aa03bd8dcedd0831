"""Progress a user can see inside epochs and validation: `python -m study.trial` writes a bar (terminal) or a
line every ~10 % (no terminal) with the step count, the rate and an ETA, and nothing with --no-progress."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import struct
import termios

import pytest
from conftest import SMALL_FLAGS, write_pairs

from study import progress
from study.trial import main as trial_main

slow = pytest.mark.slow  # the tests that train a (tiny) model for an epoch

# epoch 1/1 train:  40% 8/20 step [00:01, ETA 00:01, 6.20step/s, loss 6.443]
TRAIN_LINE = re.compile(r"epoch 1/1 train: +(\d+)% (\d+)/(\d+) step \[[\d:]+, ETA [\d:?]+, .*loss \d+\.\d+\]")


@pytest.fixture(scope="module")
def argv(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("progress")
    pairs = root / "pairs.tsv"
    write_pairs(pairs, 200)
    # 160 training pairs in batches of 8: 20 steps, enough for every 10 % to be its own line.
    return ["--regime", "scratch", "--data", str(pairs), "--cache-dir", str(root / "cache"), "--epochs", "1",
            "--batch-size", "8", *SMALL_FLAGS, "--max-eval-pairs", "16", "--eval-batch-size", "8", "--torch-threads", "1"]


@pytest.fixture(autouse=True)
def auto_progress(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    yield
    progress.set_mode("auto")  # whatever a test's CLI call chose, the next test starts from the default


def _run(argv: list[str], capsys) -> tuple[str, str]:
    assert trial_main(argv) == 0
    out = capsys.readouterr()
    assert len([line for line in out.out.splitlines() if line.startswith("epoch  1")]) == 1  # the epoch line stays
    return out.out, out.err


@slow
def test_without_a_terminal_progress_is_a_line_every_tenth(argv, capsys):
    _, err = _run(argv, capsys)  # pytest's captured stderr is not a terminal
    lines = [m for m in map(TRAIN_LINE.search, err.splitlines()) if m]
    assert [int(m[2]) for m in lines] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20], err  # every 10 %, not every step
    assert all(m[3] == "20" for m in lines)
    assert re.search(r"val generation: +100% 2/2 batch \[[\d:]+, ETA", err), err
    assert not any("\r" in line for line in err.split("\n") if "epoch 1/1" in line)  # plain lines for a log file


@slow
def test_on_a_terminal_progress_is_a_tqdm_bar(argv, capsys, monkeypatch):
    monkeypatch.setenv(progress.ENV, "bar")  # what `auto` picks on a terminal
    _, err = _run(argv, capsys)
    frames = [f for f in err.split("\r") if "epoch 1/1 train:" in f]
    assert frames and len(frames) <= 23, err  # the first frame, at most one a step, the last
    assert re.search(r"epoch 1/1 train: +\d+%\|.*\| \d+/20 step \[[\d:]+, ETA [\d:?]+, .*loss \d+\.\d+\]", err), err


@slow
def test_no_progress_writes_none(argv, capsys, monkeypatch):
    monkeypatch.setenv(progress.ENV, "bar")  # --no-progress wins over the environment too
    _, err = _run([*argv, "--no-progress"], capsys)
    assert "train:" not in err and "ETA" not in err and "generation:" not in err, err


@contextlib.contextmanager
def _terminal(columns: int):
    """A real pseudo-terminal whose reported width is `columns` (a fresh pty reports 0 x 0, as some
    containers' and `script` sessions' terminals do)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        with os.fdopen(follower, "w") as tty:
            yield tty
    finally:
        os.close(leader)


@pytest.mark.parametrize("columns, expected", [(0, "lines"), (80, "bar")])
def test_a_terminal_of_width_zero_gets_lines_not_an_invisible_bar(columns, expected, monkeypatch):
    with _terminal(columns) as tty:
        monkeypatch.setattr("sys.stderr", tty)
        assert tty.isatty()
        assert progress.mode() == expected
        # what a driver on that terminal hands its Ray workers: lines, unless the bar can be drawn
        assert progress.for_workers() == ({} if expected == "bar" else {progress.ENV: "lines"})


def test_a_driver_writing_to_a_log_hands_lines_to_its_workers(monkeypatch, tmp_path):
    with open(tmp_path / "driver.log", "w") as log:
        monkeypatch.setattr("sys.stderr", log)
        assert progress.for_workers() == {progress.ENV: "lines"}
        monkeypatch.setenv(progress.ENV, "off")  # a choice the user made travels as it is
        assert progress.for_workers() == {progress.ENV: "off"}
