"""The Pi build, checked under emulation (called by ``.ci/run``; the README's "Raspberry Pi" section).

A Debian Bookworm arm64 userland (what Raspberry Pi OS Bookworm is built on: the same Python 3.11
and glibc) runs under qemu-user through binfmt_misc.  Inside it, with the aarch64 wheels of both
interpreters installed offline, this script runs the model and analysis tests under LiteRT and
under tflite-runtime 2.14, ``edge analyze --json`` on the packaged and demo pictures (compared
with the same run on this x86-64 machine, tolerances in ``compare.py``) and ``edge run`` on a
short clip (window counts equal to this machine's).

Two traps of the emulation are set right, and must stay so:
- qemu-user shows the guest this machine's x86 ``/proc/cpuinfo``; LiteRT then crashes in its
  interpreter constructor.  Every guest command runs in a private mount namespace with a Pi 4's
  cpuinfo bound over ``/proc/cpuinfo``.
- qemu's default CPU model (``max``) advertises features no Pi has (SME) and LiteRT computes
  wrong results on it.  ``QEMU_CPU=cortex-a72`` (a Pi 4's core) is set for every guest process.
  ``EDGE_AARCH64_QEMU_CPU=max`` shows what a broken build looks like: the step fails.

The userland and its two virtual environments are cached as two tarballs under
``EDGE_AARCH64_CACHE`` (default ``/var/cache/edge-aarch64``), each keyed by everything that went
into it, so only the first run on a machine pays for debootstrap, and a new wheel pin only for
the wheels.

Exit status: 0 passed or skipped (the reason is printed), 1 a check failed, 2 set-up failed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
from compare import Tolerance, compare_records, compare_totals, read_records, run_totals, table  # noqa: E402

SUITE = "bookworm"
GUEST_PACKAGES = ("python3", "python3-venv", "python3-pip")
GUEST_PYTHON = "3.11"  # Bookworm's; the wheels are chosen for it
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{n}_aarch64" for n in range(17, 37)]  # glibc 2.36
DEFAULT_CACHE = Path("/var/cache/edge-aarch64")
RUNTIME = ["opencv-python-headless", "pyyaml>=6", "paho-mqtt>=2"]  # as pyproject.toml asks
RECIPE_VERSION = 1  # bump when the way the userland is built changes


def host_version(name: str) -> str:
    return importlib.metadata.version(name)


def venv_requirements() -> dict[str, list[str]]:
    """Per guest venv, what a Pi running Bookworm gets: ``systemd/install.sh`` keeps numpy < 2
    next to LiteRT (apt's picamera2 stack is built against numpy 1.x), and ``--tflite`` installs
    tflite-runtime 2.14.  LiteRT is pinned to this machine's release, so the comparison is of
    architectures, not of releases."""
    tools = ["pytest>=8", "scikit-image", "setuptools>=77"]  # the tests' needs, the editable install's
    return {
        "litert": [f"ai-edge-litert=={host_version('ai-edge-litert')}", "numpy<2", *RUNTIME, *tools],
        "tflite": ["tflite-runtime==2.14.0", "numpy<2", *RUNTIME, *tools],
    }


# The emulated test set: every shipped (int8) model loads and answers, the detector on a real
# photo and on blanks, refusal of corrupt models, the analysis command's output and its video
# path.  Left out: the float32 references, which no device installs (30-40 s each emulated),
# argument parsing and table formatting, which no architecture changes, and the evaluations,
# which re-run the same models many times (the int8-vs-float one alone took 140-190 s emulated).
EMULATED_TESTS = [
    "tests/test_models.py",
    "tests/test_analyze.py::test_analyze_json_schema_on_a_real_photo",
    "tests/test_analyze.py::test_api_finds_every_face_of_a_composite_and_none_in_noise",
    "tests/test_analyze.py::test_attributes_switch_off",
    "tests/test_analyze.py::test_video_frames_are_analysed",
    "tests/test_analyze.py::test_corrupt_model_is_refused_with_both_checksums",
]


class Skip(Exception):
    """This machine cannot run the step; the message says why."""


class SetupError(Exception):
    """The userland or its wheels could not be built."""


def log(msg: str) -> None:
    print(f"[aarch64 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: Sequence[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), timeout=timeout, check=False, **kw)


# --- the host: root, binfmt_misc, qemu ---------------------------------------------------------


def check_host() -> None:
    if platform.machine() != "x86_64":
        raise Skip(f"this machine is {platform.machine()}, not x86-64: run the tests natively instead")
    if os.geteuid() != 0:
        raise Skip("needs root (debootstrap, chroot, mount namespaces); run .ci/run as root")
    for tool in ("debootstrap", "qemu-aarch64-static", "update-binfmts", "unshare", "zstd"):
        if shutil.which(tool) is None:
            raise Skip(f"{tool} is not installed (apt-get install qemu-user-static binfmt-support debootstrap zstd)")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        r = run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], 30, capture_output=True, text=True)
        if r.returncode != 0:
            raise Skip(f"binfmt_misc cannot be mounted here ({r.stderr.strip()}); foreign binaries cannot run")
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        r = run(["update-binfmts", "--enable", "qemu-aarch64"], 60, capture_output=True, text=True)
        if r.returncode != 0 or not entry.exists():
            raise Skip(f"qemu-aarch64 cannot be registered with binfmt_misc: {r.stderr.strip() or 'no entry'}")
    flags = next((line for line in entry.read_text().splitlines() if line.startswith("flags:")), "")
    if "F" not in flags:
        raise Skip(f"qemu-aarch64 is registered without the F flag ({flags}); a chroot cannot find qemu")


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line format)."""
    if url := os.environ.get("EDGE_AARCH64_MIRROR"):
        return url
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text().split("\n\n"):
            fields = dict(
                line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#")
            )
            uris, suites = fields.get("URIs", "").split(), fields.get("Suites", "").split()
            if SUITE in suites and uris:
                return uris[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise SetupError(f"no Debian {SUITE} mirror in apt's sources; set EDGE_AARCH64_MIRROR to one")


# --- the guest ---------------------------------------------------------------------------------

GUEST_MOUNTS = """set -e
mount -t proc proc "$ROOT/proc"
mount --bind "$CPUINFO" "$ROOT/proc/cpuinfo"
mount -t sysfs -o ro sysfs "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
mount -t tmpfs tmpfs "$ROOT/tmp"
exec chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/bin:/bin:/usr/sbin:/sbin \
    QEMU_CPU="$QEMU_CPU" PYTHONDONTWRITEBYTECODE=1 /bin/sh -c "$GUEST_SCRIPT"
"""


class Guest:
    """Commands in the arm64 userland: each in its own mount namespace, so the mounts it needs
    (proc, the Pi's cpuinfo, sysfs, /dev, a fresh /tmp) vanish with it, however it ends."""

    def __init__(self, root: Path, qemu_cpu: str) -> None:
        self.root, self.qemu_cpu = root, qemu_cpu

    def run(self, script: str, timeout: float, capture: bool = False) -> subprocess.CompletedProcess:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ROOT": str(self.root),
            "CPUINFO": str(HERE / "cpuinfo-pi4"),
            "QEMU_CPU": self.qemu_cpu,
            "GUEST_SCRIPT": script,
        }
        return run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", GUEST_MOUNTS],
            timeout,
            env=env,
            capture_output=capture,
            text=True,
        )

    def check(self, script: str, timeout: float, what: str) -> None:
        if self.run(script, timeout).returncode != 0:
            raise SetupError(f"{what} failed in the arm64 userland")


# --- the cached userland: two layers, so a new wheel pin does not repeat debootstrap ----------


def key_of(recipe: object) -> str:
    return hashlib.sha256(json.dumps([RECIPE_VERSION, recipe], sort_keys=True).encode()).hexdigest()[:16]


def download_wheels(name: str, requirements: list[str], dest: Path) -> None:
    """aarch64 wheels for the guest's Python, fetched here (the guest has no network)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--dest", str(dest)]
    cmd += ["--python-version", GUEST_PYTHON, "--implementation", "cp", "--abi", "cp311", "--abi", "abi3"]
    cmd += ["--abi", "none", *platforms, "-r", str(dest / "requirements.txt")]
    if run(cmd, 1200).returncode != 0:
        raise SetupError(f"pip could not download the aarch64 wheels for the {name} venv: {requirements}")


def build_base(root: Path, mirror: str) -> None:
    log(f"debootstrap {SUITE} arm64 from {mirror} (second stage emulated; 4-10 minutes)")
    cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(GUEST_PACKAGES)}"]
    if run([*cmd, SUITE, str(root), mirror], 3600).returncode != 0:
        raise SetupError(f"debootstrap of {SUITE} arm64 failed (see {root}/debootstrap/debootstrap.log)")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def build_venvs(root: Path, requirements: dict[str, list[str]], qemu_cpu: str) -> None:
    guest = Guest(root, qemu_cpu)
    for name, reqs in requirements.items():
        log(f"{name} venv: downloading aarch64 wheels, installing them offline (about 2 minutes)")
        wheels = root / "wheels" / name
        download_wheels(name, reqs, wheels)
        guest.check(
            f"python3 -m venv /opt/{name} && /opt/{name}/bin/pip install -q --no-index "
            f"--find-links /wheels/{name} -r /wheels/{name}/requirements.txt",
            3600,
            f"installing the {name} wheels",
        )
    shutil.rmtree(root / "wheels")


def layer(cache: Path, name: str, key: str, root: Path, paths: Sequence[str], build) -> str:
    """Unpack the cached layer ``name`` into ``root``, or build it and cache ``paths`` of it."""
    tarball = cache / f"{name}-{key}.tar.zst"
    if tarball.exists():
        if run(["tar", "--zstd", "-xf", str(tarball), "-C", str(root)], 1800).returncode == 0:
            return "cached"
        log(f"the cached {tarball} is unreadable; building it again")
    for old in cache.glob(f"{name}-*.tar.zst"):
        old.unlink()
    build()
    partial = tarball.with_suffix(".partial")
    if run(["tar", "--zstd", "-cf", str(partial), "-C", str(root), *paths], 1800).returncode != 0:
        raise SetupError(f"could not write {partial}")
    partial.rename(tarball)
    log(f"cached as {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
    return "built"


def restore_userland(cache: Path, root: Path, mirror: str, requirements: dict, qemu_cpu: str) -> str:
    """The userland with both venvs at ``root``, from the cache where it can be."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    base_key = key_of([SUITE, GUEST_PACKAGES, mirror])
    base = layer(cache, f"{SUITE}-arm64", base_key, root, ["."], lambda: build_base(root, mirror))
    venvs = layer(
        cache,
        f"{SUITE}-arm64-venvs-{base_key}",
        key_of(requirements),
        root,
        [f"./opt/{name}" for name in requirements],
        lambda: build_venvs(root, requirements, qemu_cpu),
    )
    return f"userland {base}, venvs {venvs}"


# --- the checks --------------------------------------------------------------------------------


def pictures() -> list[Path]:
    """The packaged astronaut and face-api's six demo photos (fetched and verified from the
    pinned npm package, as the converter does)."""
    from edge_convert.upstream import FACE_API, fetch

    demo = fetch(FACE_API, REPO / ".cache" / "npm") / "demo"
    return [REPO / "edge" / "data" / "astronaut.jpg", *sorted(demo.glob("*.jpg"))]


CLIP_S = 12.0


def clip(path: Path) -> Path:
    """A short scene at 4 fps: three people walking past, one alone and two together (48 frames:
    a run of the 512 detector takes about 5 s under emulation here, of the 320 one about 2 s)."""
    from edge.scenes import Scene, Visitor, write_video

    def walker(enter: float, dwell: float, lane: float) -> Visitor:
        return Visitor(enter, enter + dwell, lane, 100.0, 1 if lane < 0.5 else -1, False, (1.0, 1.0, 1.0))

    scene = Scene(640, 480, 4.0, CLIP_S, (walker(0.5, 5.0, 0.3), walker(6.0, 5.0, 0.3), walker(6.5, 5.0, 0.7)))
    return write_video(scene, path)


def daemon_config(video: str, out: str, state: str) -> str:
    doc = {
        "device_id": "pi-check",
        "site": "ci",
        "source": {"type": "file", "path": video, "realtime": False},
        "models": {"detector_input": 320},  # the faces are 100 px: the fast detector finds them
        "detector": {"min_face_px": 0},  # in one pass a frame
        "runtime": {"threads": 2},  # the guest's cpuinfo says 4 cores; this machine may have 2
        "aggregation": {"window_s": 4, "min_cell": 1},
        "sink": {"type": "jsonl", "path": out},
        "state_dir": state,
    }
    return json.dumps(doc)  # JSON is YAML


def copy_checkout(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), into the guest."""
    listing = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], 60, cwd=REPO, capture_output=True)
    dest.mkdir()
    pack = run(["tar", "--null", "-T", "-", "-cf", "-"], 300, cwd=REPO, input=listing.stdout, capture_output=True)
    unpack = run(["tar", "-xf", "-", "-C", str(dest)], 300, input=pack.stdout)
    if listing.returncode or pack.returncode or unpack.returncode:
        raise SetupError(f"could not copy this checkout into {dest}")


def host_edge(venv: Path) -> Path:
    return REPO / venv / "bin" / "edge"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("EDGE_AARCH64_CACHE", DEFAULT_CACHE)))
    parser.add_argument("--qemu-cpu", default=os.environ.get("EDGE_AARCH64_QEMU_CPU", "cortex-a72"))
    parser.add_argument("--tests", nargs="*", default=EMULATED_TESTS, help="pytest node ids run in the guest")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        check_host()
    except Skip as why:
        print(f"SKIPPED: aarch64 (Raspberry Pi) check: {why}", flush=True)
        return 0
    args.cache.mkdir(parents=True, exist_ok=True)
    with open(args.cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return checks(args, started)
        except SetupError as err:
            print(f"FAILED: aarch64 set-up: {err}", flush=True)
            return 2
        except subprocess.TimeoutExpired as err:
            print(f"FAILED: aarch64 check: {' '.join(map(str, err.cmd))[:300]} ran past {err.timeout:g} s", flush=True)
            return 1


def checks(args: argparse.Namespace, started: float) -> int:
    requirements = venv_requirements()
    root = args.cache / "run" / "root"
    state = restore_userland(args.cache, root, debian_mirror(), requirements, args.qemu_cpu)
    log(f"{state} in {time.monotonic() - started:.0f} s; QEMU_CPU={args.qemu_cpu}")

    src = root / "src"
    copy_checkout(src)
    work = src / ".aarch64"
    work.mkdir()
    pics = pictures()
    for p in pics:
        shutil.copy2(p, work / p.name)
    video = clip(work / "clip.avi")

    guest = Guest(root, args.qemu_cpu)
    failures: list[str] = []
    for venv in ("litert", "tflite"):
        install = f"cd /src && /opt/{venv}/bin/pip install -q --no-deps --no-build-isolation -e ."
        guest.check(install, 900, f"installing this checkout in the {venv} venv")

    tests = " ".join(args.tests)
    timings = {}
    for venv in ("litert", "tflite"):
        log(f"pytest under {venv} (aarch64): {len(args.tests)} test files/ids")
        t0 = time.monotonic()
        pytest = f"/opt/{venv}/bin/python -m pytest -q -p no:cacheprovider --durations=5 -k 'not float'"
        r = guest.run(f"cd /src && {pytest} {tests}", 3600)
        timings[f"pytest {venv}"] = time.monotonic() - t0
        if r.returncode != 0:
            failures.append(f"the emulated tests failed under {venv}")

    names = " ".join(f"/src/.aarch64/{p.name}" for p in pics)
    runs = {"litert": "litert", "tflite": "tflite_runtime"}
    for venv, backend in runs.items():
        t0 = time.monotonic()
        r = guest.run(
            f"/opt/{venv}/bin/edge analyze --json --ethnicity --threads 2 --backend {backend} {names} "
            f"> /src/.aarch64/analyze-{venv}-aarch64.jsonl",
            1800,
        )
        timings[f"analyze {venv}"] = time.monotonic() - t0
        if r.returncode != 0:
            failures.append(f"edge analyze failed under {venv} on aarch64")
    host_runs = {"litert": Path(".venv"), "tflite": Path(".venv-tflite")}
    for venv, path in host_runs.items():
        if not host_edge(path).exists():
            log(f"no {path} here: {venv} on x86-64 is left out of the comparison")
            continue
        with open(work / f"analyze-{venv}-x86_64.jsonl", "w") as out:
            r = run(
                [str(host_edge(path)), "analyze", "--json", "--ethnicity", "--backend", runs[venv], *map(str, pics)],
                900,
                stdout=out,
            )
        if r.returncode != 0:
            failures.append(f"edge analyze failed under {venv} on x86-64")

    # The daemon once, end to end, on both machines.
    t0 = time.monotonic()
    (work / "daemon-aarch64.yaml").write_text(
        daemon_config("/src/.aarch64/clip.avi", "/src/.aarch64/windows-aarch64.jsonl", "/src/.aarch64/state-aarch64")
    )
    if guest.run("/opt/litert/bin/edge run --config /src/.aarch64/daemon-aarch64.yaml", 1800).returncode != 0:
        failures.append("edge run failed on aarch64")
    timings["edge run litert"] = time.monotonic() - t0
    (work / "daemon-x86_64.yaml").write_text(
        daemon_config(str(video), str(work / "windows-x86_64.jsonl"), str(work / "state-x86_64"))
    )
    if run([str(host_edge(Path(".venv"))), "run", "--config", str(work / "daemon-x86_64.yaml")], 600).returncode:
        failures.append("edge run failed on x86-64")

    failures += report(work, failures)
    log("guest timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    log(f"aarch64 step: {time.monotonic() - started:.0f} s in all ({state})")
    kept = args.cache / "last-run"  # the outputs compared, for a look after the fact
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    for path in work.glob("*.jsonl"):
        shutil.copy2(path, kept / path.name)
    shutil.rmtree(root.parent)
    if failures:
        print("FAILED: aarch64 (Raspberry Pi) check:\n  " + "\n  ".join(failures), flush=True)
        return 1
    print("PASSED: aarch64 (Raspberry Pi) check", flush=True)
    return 0


def report(work: Path, earlier: list[str]) -> list[str]:
    """Print the comparison tables; return what breaks the LiteRT tolerances."""
    failures: list[str] = []
    tol = Tolerance()

    def load(name: str) -> dict | None:
        path = work / f"analyze-{name}.jsonl"
        return read_records(path) if path.exists() and path.stat().st_size else None

    rows = []
    pairs = [
        ("LiteRT x86-64 vs LiteRT aarch64", "litert-x86_64", "litert-aarch64", True),
        ("tflite-runtime x86-64 vs tflite-runtime aarch64", "tflite-x86_64", "tflite-aarch64", False),
        ("LiteRT x86-64 vs tflite-runtime x86-64", "litert-x86_64", "tflite-x86_64", False),
        ("LiteRT aarch64 vs tflite-runtime aarch64", "litert-aarch64", "tflite-aarch64", False),
    ]
    for title, a, b, enforced in pairs:
        ra, rb = load(a), load(b)
        if ra is None or rb is None:
            continue
        cmp = compare_records(ra, rb)
        rows.append((title + ("" if enforced else " (reported)"), cmp))
        detail = cmp.count_mismatches + cmp.label_flips
        if detail:
            print(f"{title}:\n  " + "\n  ".join(detail), flush=True)
        if enforced:
            failures += [f"{title}: {f}" for f in cmp.failures(tol)]
    print(table(rows), flush=True)
    if not any(t.startswith("LiteRT x86-64 vs") for t, _ in rows) and not earlier:
        failures.append("the LiteRT comparison did not run")

    x86, arm = work / "windows-x86_64.jsonl", work / "windows-aarch64.jsonl"
    if x86.exists() and arm.exists():
        tx, ta = run_totals(x86), run_totals(arm)
        diffs = compare_totals(tx, ta)
        print(f"edge run on a {CLIP_S:g} s clip, totals on x86-64: {tx}; aarch64 equal: {not diffs}", flush=True)
        failures += [f"edge run counted differently on aarch64: {d}" for d in diffs]
        if tx["visitors"] != 3:
            failures.append(f"edge run counted {tx['visitors']} visitors on x86-64; the clip has 3")
    return failures


if __name__ == "__main__":
    sys.exit(main())
