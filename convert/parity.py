"""Per-group parity of the int8 attribute models, on faces the conversion can reproduce.

The pinned photos carry no labels, so groups are built from what can be regenerated: each
verification crop is re-rendered under seeded capture conditions (darker and lighter tones,
low light, side light, colour casts, greyscale), and split by the float model's own gender
call. Agreement bounds accuracy: on any labelling of a group, int8 accuracy can differ from
float accuracy by at most the share of crops on which the two disagree. So "gender agreement
>= 97% in every group" means no group here can lose more than 3 points; ``edge eval`` measures
the labelled change on utkface-dev.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .verify import top1_agreement

MIN_GROUP = 40  # smaller groups are reported, not held to a bar
GENDER_AGREEMENT_BAR = 0.97  # 1 - 0.97: at most 3 points of accuracy lost in any group
# Expression and ethnicity have more classes and lower overall bars (0.95); a group may fall
# at most this much below its model's overall bar.
GROUP_SLACK = 0.03


def _tone(x: np.ndarray, rng: np.random.Generator, gamma: tuple[float, float]) -> np.ndarray:
    return np.clip(255.0 * (x / 255.0) ** rng.uniform(*gamma), 0, 255)


def _darker(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darker tones: midtones (skin included) pushed down, a warm shift as in deeper skin."""
    return _tone(x, rng, (1.6, 2.2)) * np.array([1.0, 0.9, 0.8])


def _lighter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _tone(x, rng, (0.5, 0.7))


def _low_light(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dim = x * rng.uniform(0.25, 0.4)
    return cv2.GaussianBlur(dim, (0, 0), 0.8) + rng.normal(0.0, 3.0, x.shape)


def _side_light(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(rng.uniform(0.3, 0.5), 1.0, x.shape[1])
    if rng.random() < 0.5:
        ramp = ramp[::-1]
    return x * ramp[None, :, None]


def _warm(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x * np.array([1.0, rng.uniform(0.8, 0.9), rng.uniform(0.55, 0.7)])  # tungsten


def _cool(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x * np.array([rng.uniform(0.7, 0.85), rng.uniform(0.9, 1.0), 1.0])  # shade, some LEDs


def _grey(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.repeat((x @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=-1)  # IR cameras


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "darker tones": _darker,
    "lighter tones": _lighter,
    "low light": _low_light,
    "side light": _side_light,
    "warm cast": _warm,
    "cool cast": _cool,
    "greyscale": _grey,
}


def conditions(crops: np.ndarray, seed: int, views: int = 1) -> dict[str, np.ndarray]:
    """The crops as captured and re-rendered under each condition (uint8, seeded); each run of
    ``views`` consecutive crops (the views of one face) is rendered alike."""
    rng = np.random.default_rng(seed)
    out = {"as captured": crops}
    for name, render in CONDITIONS.items():
        rendered = []
        for i, c in enumerate(crops):
            if i % views == 0:
                state = rng.bit_generator.state
            else:
                rng.bit_generator.state = state
            rendered.append(np.clip(render(c.astype(np.float64), rng) + 0.5, 0, 255).astype(np.uint8))
        out[name] = np.stack(rendered)
    return out


@dataclass(frozen=True)
class GroupRow:
    condition: str
    group: str  # the float model's gender call, or "all"
    n: int
    agreement: dict[str, float]  # output name -> top-1 agreement int8 vs float


def group_rows(
    outputs: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]],
    split: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    compared: tuple[str, ...],
) -> list[GroupRow]:
    """Top-1 agreement of each ``compared`` output per condition and per ``split`` group.

    ``outputs`` maps a condition to (float, int8) model outputs on its crops; ``split`` maps
    the float outputs to boolean masks by group name.
    """
    rows = []
    for condition, (ref, q) in outputs.items():
        masks = {"all": np.ones(len(next(iter(ref.values()))), bool), **split(ref)}
        for group, mask in masks.items():
            rows.append(
                GroupRow(
                    condition,
                    group,
                    int(mask.sum()),
                    {k: top1_agreement(ref[k][mask], q[k][mask]) if mask.any() else 1.0 for k in compared},
                )
            )
    return rows


def weakest(rows: list[GroupRow], output: str) -> GroupRow:
    """The held group (at least MIN_GROUP crops) with the lowest agreement on ``output``."""
    held = [r for r in rows if r.n >= MIN_GROUP]
    return min(held, key=lambda r: r.agreement[output])


def table(model: str, rows: list[GroupRow], compared: tuple[str, ...]) -> str:
    head = f"| condition | float call | n | {' | '.join(f'{k} agreement %' for k in compared)} |"
    lines = [f"{model}: int8 against float per group", "", head, "|" + "---|" * (3 + len(compared))]
    for r in rows:
        cells = " | ".join(f"{100 * r.agreement[k]:.1f}" for k in compared)
        lines.append(f"| {r.condition} | {r.group} | {r.n} | {cells} |")
    return "\n".join(lines) + "\n"
