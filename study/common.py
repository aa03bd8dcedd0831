"""Small helpers every stage shares: atomic writes, content hashes for cache keys, durations, hub errors.

They sit below every other module of the package (they import nothing of it but `StudyError`), so the
data, model, training and results stages can all use one implementation of each.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from study.config import StudyError

# --- reading a study's own files ------------------------------------------------------------------------

DAMAGED_HINT = ("it was left as it is: restore it from a copy, or delete the regime's folder (or the whole study) "
                "and run the study again")


def read_json_file(path: Path, missing_ok: bool = False) -> dict | None:
    """A JSON file the study wrote (study.json, best.json), or None when it is absent and `missing_ok`.

    The study writes these atomically (`write_json`), so one that does not parse was damaged afterwards
    (truncated by a full disk, edited by hand): a StudyError naming it, never a traceback, and the file is
    neither rewritten nor deleted."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise StudyError(f"{path} is missing: the study folder is incomplete; pass a finished study, or resume it "
                         f"with `python -m study.run --resume NAME`") from None
    except (OSError, UnicodeDecodeError) as err:
        raise StudyError(f"{path} cannot be read ({err}); {DAMAGED_HINT}") from err
    try:
        value = json.loads(text)
    except ValueError as err:
        raise StudyError(f"{path} is damaged: not valid JSON ({err}); {DAMAGED_HINT}") from err
    if not isinstance(value, dict):
        raise StudyError(f"{path} is damaged: a JSON {type(value).__name__}, not an object; {DAMAGED_HINT}")
    return value


def check_sqlite(path: Path) -> None:
    """Fail with one line if `path` (a study's optuna.db) exists but is not an SQLite database."""
    import sqlite3

    path = Path(path)
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as err:
        raise StudyError(f"{path} is damaged: not an SQLite database ({err}); the trials' own results are in the "
                         f"regime folders, and {DAMAGED_HINT}") from err


# --- files that appear whole or not at all --------------------------------------------------------------


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary file beside `path` (same suffix, so writers that infer the format
    from it - parquet, PNG - still can), then rename it onto `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_lines(path: Path, texts: list[str]) -> None:
    """One text per line (a text's own newlines become spaces), as sacrebleu's command line reads them."""
    write_text(path, "".join(t.replace("\n", " ") + "\n" for t in texts))


def write_json(path: Path, obj: dict) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_dir(final: Path) -> Path:
    """A temporary directory beside `final`, to fill and then `publish_dir` onto it once complete."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def publish_dir(tmp: Path, final: Path) -> None:
    """Rename a completed `atomic_dir` onto `final`; if another process published the same entry first,
    keep theirs (cache entries with one key are identical) and drop ours."""
    try:
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


# --- cache keys -------------------------------------------------------------------------------------------


def content_hash(parts: Iterable[str | bytes], length: int = 16) -> str:
    """A hex digest of a sequence of strings, each followed by a separator no text contains (so ["ab", "c"]
    and ["a", "bc"] differ). Every cache key of the project (tokenizer, tokenized data, upstream) uses it."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:length]


def settings_hash(settings: dict, length: int = 20) -> str:
    """A hex digest of a JSON-able description of settings (key order does not matter)."""
    return content_hash([json.dumps(settings, sort_keys=True, default=str)], length)


# --- durations --------------------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """`12.3 s`, `4.5 min` or `1.25 h`; `-` for a missing value. The one format of every table and log line."""
    if seconds is None:
        return "-"
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "-"
    if math.isnan(s):
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h"


# --- models and tokenizers that cannot be loaded ------------------------------------------------------------


def not_loadable(spec: str, what: str, err: Exception) -> str:
    """The one-line message for a model, tokenizer or configuration that `from_pretrained` could not load."""
    if Path(spec).exists():
        return f"cannot load a {what} from {spec}: {type(err).__name__}: {str(err).splitlines()[0]}"
    offline = hub_offline()
    return (
        f"cannot load the {what} of {spec!r}: it is not a local directory and the model hub could not provide it "
        f"({f'the hub is unreachable: {offline}' if offline else 'this machine may be offline'}); "
        f"pass --model tiny or a local model directory"
    )


_YES = ("1", "ON", "YES", "TRUE")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@functools.cache
def hub_offline(timeout_s: float = 2.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached from this machine, or None when it can.

    Without network, transformers and datasets retry for most of a minute, printing every retry, before
    they give up; asking first takes at most `timeout_s`. HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE,
    HF_DATASETS_OFFLINE) is taken at its word; otherwise one TCP connection is tried, to the hub
    (HF_ENDPOINT) or to the HTTPS proxy when one is set, once per process.
    """
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().upper() in _YES:
            return f"{name}={os.environ[name]}"
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = target.hostname or "huggingface.co", target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return f"no connection to {host}:{port} ({err.strerror or type(err).__name__})"
    return None


def require_hub(spec: str, what: str, instead: str) -> None:
    """Fail in seconds with one line when `spec` (a hub id, not a local path) must come from an unreachable hub.

    `what` is "model" or "dataset"; `instead` says what else to pass. With HF_HUB_OFFLINE=1 set, a cached
    model (and any dataset: `datasets` checks its own cache at once) is left to the libraries, which then
    never touch the network; without it, a cached model would still wait for the retries, so the message
    says to set it."""
    if Path(spec).expanduser().exists():
        return
    offline = hub_offline()
    if offline is None:
        return
    said_offline = offline.startswith(OFFLINE_VARIABLES)
    if what != "model":
        if said_offline:
            return
        raise StudyError(f"cannot load the {what} {spec!r}: the Hugging Face Hub is unreachable ({offline}); "
                         f"pass {instead}, or set HF_HUB_OFFLINE=1 if it is in the local Hugging Face cache")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except ValueError:  # not even a valid repository id
        cached = False
    if cached and said_offline:
        return
    if cached:
        raise StudyError(f"cannot load the {what} {spec!r}: the Hugging Face Hub is unreachable ({offline}); it is "
                         f"in the local Hugging Face cache: set HF_HUB_OFFLINE=1 to use it, or pass {instead}")
    raise StudyError(f"cannot load the {what} {spec!r}: the Hugging Face Hub is unreachable ({offline}) and it is "
                     f"not in the local Hugging Face cache; pass {instead}")


def require(condition: bool, message: str) -> None:
    """Raise a StudyError with `message` unless `condition` holds."""
    if not condition:
        raise StudyError(message)
