"""Real file systems that fail the way a device's do: a small tmpfs that fills up, and a loop-mounted
ext4 with ``errors=remount-ro`` that the kernel turns read-only on an error (a failing SD card).
Both need root, as in CI; a test skips with the reason where they cannot be mounted."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(mount_point: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at ``mount_point`` for the block."""
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full."""
    filler = folder / "filler"
    # Unbuffered: every write reaches the disk, so the full disk shows there and not at close.
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


@contextmanager
def failing_ext4(where: Path) -> Iterator[tuple[Path, Callable[[], None]]]:
    """An 8 MB ext4 image mounted at ``where`` with ``errors=remount-ro``, and a function that makes
    the kernel report a file system error on it (``trigger_fs_error``): from then on every write
    fails, as on an SD card the kernel gave up on, while files stay open and readable."""
    image = where.with_name(where.name + ".img")
    with image.open("wb") as fh:
        fh.truncate(8 * 1024 * 1024)
    where.mkdir()
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make an ext4 image here: {made.stderr.decode().strip() or made.returncode}")
    done = subprocess.run(
        ["mount", "-o", "loop,errors=remount-ro", str(image), str(where)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image here (needs root and loop devices): {done.stderr.strip()}")
    try:
        source = next(
            line.split()[0] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[1] == str(where)
        )
        knob = Path("/sys/fs/ext4") / Path(source).name / "trigger_fs_error"
        if not knob.exists():
            pytest.skip(f"this kernel has no {knob}")

        def fail() -> None:
            knob.write_text("edge test: a failing card\n")

        yield where, fail
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        image.unlink(missing_ok=True)
