"""Where a study lives: a local folder, or any URI Ray Tune's storage supports (s3://, gs://, ...).

Ray Tune writes its experiment directories (trials, checkpoints) straight to the URI. The study's own
files — study.json, optuna.db (SQLite needs a local file), best.json, test.*.txt, summary.csv, the
analysis — are written to a local staging folder and pushed to the URI after every regime, so a
cluster's results survive the head node; `pull` brings them back for `--resume` or analysis.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from study.config import StudyError, default_cache_dir


def is_uri(path: str) -> bool:
    return "://" in str(path)


@dataclass
class StudyLocation:
    root: str  # --results as given: a local folder or a URI
    name: str
    cache_dir: str

    @property
    def remote(self) -> str | None:
        return f"{self.root.rstrip('/')}/{self.name}" if is_uri(self.root) else None

    @property
    def local(self) -> Path:
        """Where the study's own files are written (the study directory itself when it is local)."""
        if self.remote is None:
            return Path(self.root).expanduser().resolve() / self.name
        key = hashlib.sha256(self.remote.encode()).hexdigest()[:12]
        return Path(self.cache_dir) / "studies" / f"{self.name}-{key}"

    @property
    def tune_storage(self) -> str:
        """Ray Tune's `storage_path`: the URI itself, so trials on any node write their checkpoints there."""
        return self.remote or str(self.local)

    def describe(self) -> str:
        return self.remote or str(self.local)

    def _fs(self):
        import pyarrow.fs

        try:
            return pyarrow.fs.FileSystem.from_uri(self.remote)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for bad or unreachable URIs
            raise StudyError(f"cannot open {self.remote}: {str(err).splitlines()[0]}") from err

    def exists(self) -> bool:
        if self.remote is None:
            return (self.local / "study.json").is_file()
        import pyarrow.fs

        fs, path = self._fs()
        return fs.get_file_info(f"{path}/study.json").type == pyarrow.fs.FileType.File

    def push(self) -> None:
        """Copy the study's own files to the URI (merging: Tune's files there are left alone)."""
        if self.remote is None:
            return
        import pyarrow.fs

        fs, path = self._fs()
        fs.create_dir(path, recursive=True)  # some filesystems (file://) need the folder to exist first
        pyarrow.fs.copy_files(str(self.local), path, source_filesystem=pyarrow.fs.LocalFileSystem(),
                              destination_filesystem=fs)

    def pull(self, with_trials: bool = False) -> None:
        """Copy the study's files from the URI to the local folder; Tune's trial folders only with
        `with_trials` (for analysis), and never their checkpoints."""
        if self.remote is None:
            return
        import pyarrow.fs

        fs, path = self._fs()
        for info in fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=True)):
            if info.type != pyarrow.fs.FileType.File:
                continue
            relative = info.path[len(path.rstrip("/")) + 1:]
            parts = relative.split("/")
            in_trial = len(parts) > 2
            if (in_trial and not with_trials) or any(p.startswith("checkpoint_") for p in parts):
                continue
            target = self.local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
                dst.write(src.read())


# --- a study at a URI, staged for analysis (study.analyze) -------------------------------------------------

class _AnalysisStaging(StudyLocation):
    """A study at a URI staged for analysis in a folder named as the study itself (plot titles and the
    report name a study by its folder), inside StudyLocation's per-URI staging folder."""

    @property
    def local(self) -> Path:
        return super().local / self.name


def study_location(uri: str, cache_dir: str | os.PathLike | None = None) -> StudyLocation:
    """The StudyLocation of the study at `uri` (its last path component is the study's name); analyses
    are staged under <cache_dir>/analysis, never in the folder a running study.run stages its files in."""
    scheme, _, rest = uri.partition("://")
    parent, _, name = rest.rstrip("/").rpartition("/")
    if not parent.strip("/") or not name:
        raise StudyError(f"{uri} names no study; pass the study's own URI, such as s3://bucket/prefix/<study>")
    cache = Path(cache_dir or default_cache_dir()).expanduser().resolve() / "analysis"
    return _AnalysisStaging(f"{scheme}://{parent}", name, str(cache))


def pull_study(where: StudyLocation) -> Path:
    """Copy the study at a URI (its files and trial results, no checkpoints) into a fresh local staging
    folder; returns that folder."""
    try:
        if not where.exists():
            raise StudyError(f"{where.remote} is not a study (no study.json there); pass the study's own URI, "
                             f"such as the --results of python -m study.run followed by /<study>")
        shutil.rmtree(where.local, ignore_errors=True)  # a staging folder of our own: no stale file survives
        where.pull(with_trials=True)
    except (OSError, ValueError) as err:  # pyarrow's I/O errors are OSErrors, its invalid-argument ones ValueErrors
        raise StudyError(f"cannot read {where.remote}: {str(err).splitlines()[0]}") from err
    return where.local


def push_outputs(where: StudyLocation, written: list[Path]) -> None:
    """Copy the analysis' files (paths under where.local) to the same places under the study's URI."""
    import pyarrow.fs

    try:
        fs, remote = pyarrow.fs.FileSystem.from_uri(where.remote)
        for parent in sorted({p.parent for p in written} - {where.local}):
            fs.create_dir(f"{remote}/{parent.relative_to(where.local).as_posix()}", recursive=True)
        for p in written:
            pyarrow.fs.copy_files(str(p), f"{remote}/{p.relative_to(where.local).as_posix()}",
                                  source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)
    except (OSError, ValueError) as err:
        raise StudyError(f"cannot write the analysis to {where.remote}: {str(err).splitlines()[0]}; it is "
                         f"complete in {where.local}") from err
