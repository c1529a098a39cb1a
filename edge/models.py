"""Model manifest: find a model's files and refuse any whose checksum disagrees.

A model file that does not match ``models/manifest.json`` (corrupted copy,
half-finished download, someone else's model) is never loaded: the error names
the file and both checksums so an operator can tell what happened.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.interpreter import TfliteModel

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models"


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
        raise ModelError(f"model file {path} is missing (listed in the manifest)")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ModelError(f"model file {path} does not match the manifest: expected sha256 {expected_sha256}, "
                         f"file has {actual}. Re-install the models or re-run the conversion.")
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
            raise ModelError(f"{path} not found: models are missing (run `python -m convert`)") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{path} is not valid JSON: {exc}") from None
        self.models: dict[str, dict] = self.data.get("models", {})

    def info(self, key: str, variant: str = "int8") -> ModelInfo:
        if key not in self.models:
            raise ModelError(f"model {key!r} is not in {self.dir / 'manifest.json'} "
                             f"(has: {', '.join(sorted(self.models))})")
        entry = self.models[key]
        record = entry if variant == "int8" else entry.get(variant)
        if record is None:
            raise ModelError(f"model {key!r} has no {variant} variant in the manifest")
        return ModelInfo(key, verify_file(self.dir / record["file"], record["sha256"]), entry)

    def load(self, key: str, variant: str = "int8", backend: str = "auto",
             threads: int | None = None) -> tuple[ModelInfo, TfliteModel]:
        info = self.info(key, variant)
        return info, TfliteModel(info.path, backend=backend, threads=threads)

    def anchors(self, key: str = "detector") -> np.ndarray:
        rec = self.models[key]["anchors"]
        path = verify_file(self.dir / rec["file"], rec["sha256"])
        return np.load(path, allow_pickle=False)
