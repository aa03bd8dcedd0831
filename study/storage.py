"""Where a study lives: a local folder, or any URI Ray Tune's storage supports (s3://, gs://, ...).

Ray Tune writes its experiment directories (trials, checkpoints) straight to the URI. The study's own
files — study.json, optuna.db (SQLite needs a local file), best.json, test.*.txt, summary.csv, the
analysis — are written to a local staging folder and pushed to the URI after every regime, so a
cluster's results survive the head node; `pull` brings them back for `--resume` or analysis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from study.config import StudyError


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
