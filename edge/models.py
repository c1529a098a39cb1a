"""Model manifest: find a model's files and refuse any whose checksum disagrees.

A model file that does not match ``models/manifest.json`` (corrupted copy,
half-finished download, someone else's model) is never loaded: the error names
the file and both checksums so an operator can tell what happened.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.interpreter import TfliteModel

log = logging.getLogger(__name__)


def _default_dir() -> Path:
    """Where the models are when nobody says: the installed package data, else a checkout's models/.

    A wheel carries the int8 models as ``edge.model_files``; an editable install or a plain
    checkout reads the top-level ``models/`` folder, which also holds the float32 references.
    """
    packaged = Path(str(importlib.resources.files("edge"))) / "model_files"
    checkout = Path(__file__).resolve().parent.parent / "models"
    return packaged if (packaged / "manifest.json").is_file() else checkout


DEFAULT_DIR = _default_dir()
MISSING_HINT = (
    "The int8 models ship inside the installed package; the float32 models only in a source "
    "checkout's models/ folder. Point --model-dir (or models.dir in the config) at a folder that "
    "has them, re-install the package, or re-create them with `python -m edge_convert` "
    "(pip install 'edge-face-analytics[convert]')."
)


class ModelError(RuntimeError):
    """A model or the manifest is missing, corrupt or does not match."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, expected_sha256: str) -> Path:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing (listed in the manifest). {MISSING_HINT}")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ModelError(
            f"model file {path} does not match the manifest: expected sha256 {expected_sha256}, "
            f"file has {actual}. Re-install the models or re-run the conversion."
        )
    return path


@dataclass(frozen=True)
class ModelInfo:
    """One manifest entry: where the file is and how to feed and read it."""

    key: str
    path: Path
    entry: dict

    @property
    def input(self) -> dict:
        return self.entry["input"]

    @property
    def outputs(self) -> dict:
        return self.entry["outputs"]


class Manifest:
    def __init__(self, model_dir: Path = DEFAULT_DIR) -> None:
        self.dir = Path(model_dir)
        path = self.dir / "manifest.json"
        try:
            self.data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{path} not found: no models in {self.dir}. {MISSING_HINT}") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from None
        self.models: dict[str, dict] = self.data.get("models", {})

    def _record(self, key: str, variant: str) -> dict:
        if key not in self.models:
            raise ModelError(
                f"model {key!r} is not in {self.dir / 'manifest.json'} (has: {', '.join(sorted(self.models))})"
            )
        entry = self.models[key]
        record = entry if variant == "int8" else entry.get(variant)
        if record is None:
            raise ModelError(f"model {key!r} has no {variant} variant in the manifest")
        return record

    def file_name(self, key: str, variant: str = "int8") -> str:
        return str(self._record(key, variant)["file"])

    def has(self, key: str, variant: str = "int8") -> bool:
        """Whether the file is present (not whether it is intact: ``info`` checks that)."""
        return (self.dir / self.file_name(key, variant)).is_file()

    def info(self, key: str, variant: str = "int8") -> ModelInfo:
        record = self._record(key, variant)
        return ModelInfo(key, verify_file(self.dir / record["file"], record["sha256"]), self.models[key])

    def load(
        self, key: str, variant: str = "int8", backend: str = "auto", threads: int | None = None
    ) -> tuple[ModelInfo, TfliteModel]:
        info = self.info(key, variant)
        return info, TfliteModel(info.path, backend=backend, threads=threads)

    def anchors(self, key: str = "detector") -> np.ndarray:
        rec = self.models[key]["anchors"]
        path = verify_file(self.dir / rec["file"], rec["sha256"])
        return np.load(path, allow_pickle=False)
