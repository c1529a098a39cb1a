"""The labelled face folder (``labels.csv`` or UTKFace file names), and grouping faces by label.

Every result is reported overall and per race x gender and age band: the grouping lives here so
that accuracy and parity tables use the same groups in the same order.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

AGE_BANDS = ((0, 17), (18, 29), (30, 44), (45, 59), (60, 75), (76, 200))
RACES = ("white", "black", "asian", "indian", "other")
GENDERS = ("female", "male")
ADULT_AGES = (18, 75)
SEED = 0

# UTKFace's own file names: AGE_GENDER_RACE_DATE.jpg, gender 0 male / 1 female, race 0..4 as RACES.
UTKFACE_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_[^/]*\.(?:jpe?g|png)$", re.IGNORECASE)
FOLDER_LAYOUT = (
    "expected a folder of face images with either labels.csv (columns file, age, gender, race; "
    "gender male|female; race white|black|asian|indian|other) or UTKFace file names "
    "AGE_GENDER_RACE_DATE.jpg (gender 0 male, 1 female; race 0 white, 1 black, 2 asian, 3 indian, 4 other)"
)


class EvalError(ValueError):
    """The labelled folder is missing or malformed, or an option's value is not usable."""


@dataclass(frozen=True)
class Sample:
    """One labelled image: its file name in the folder and its labels."""

    file: str
    age: int
    gender: str
    race: str

    @property
    def adult(self) -> bool:
        return ADULT_AGES[0] <= self.age <= ADULT_AGES[1]


def read_labels(folder: Path) -> list[Sample]:
    """Labels from ``labels.csv`` when the folder has one, else from UTKFace-style file names."""
    path = folder / "labels.csv"
    if not folder.is_dir():
        raise EvalError(f"{folder}: no such folder ({FOLDER_LAYOUT})")
    if not path.is_file():
        return _labels_from_names(folder)
    samples = []
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"file", "age", "gender", "race"} - set(reader.fieldnames or [])
        if missing:
            raise EvalError(f"{path}: missing columns {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                samples.append(
                    Sample(row["file"], int(row["age"]), row["gender"].strip().lower(), row["race"].strip().lower())
                )
            except ValueError:
                raise EvalError(f"{path}:{line}: age must be an integer, got {row['age']!r}") from None
    if not samples:
        raise EvalError(f"{path}: no rows")
    return samples


def _labels_from_names(folder: Path) -> list[Sample]:
    samples = []
    for item in sorted(folder.iterdir()):
        m = UTKFACE_NAME.match(item.name)
        if m:
            age, gender, race = int(m[1]), ("male", "female")[int(m[2])], RACES[int(m[3])]
            samples.append(Sample(item.name, age, gender, race))
    if not samples:
        raise EvalError(f"{folder}: no labels.csv and no UTKFace-style file names ({FOLDER_LAYOUT})")
    return samples


def stratified(samples: list[Sample], n: int, seed: int = SEED) -> list[Sample]:
    """A seeded sample of ``n`` with each age band x gender x race in proportion (systematic allocation).

    The labelled folder is usually sorted by age, so its first N would be all children.
    """
    if n >= len(samples):
        return samples
    rng = np.random.default_rng(seed)
    strata: dict[tuple[int, str, str], list[int]] = {}
    for i, s in enumerate(samples):
        band = next((k for k, (lo, hi) in enumerate(AGE_BANDS) if lo <= s.age <= hi), len(AGE_BANDS))
        strata.setdefault((band, s.gender, s.race), []).append(i)
    keys = np.empty(len(samples))
    for members in strata.values():
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + rng.random(len(members))) / len(members)
    chosen = sorted(np.argsort(keys, kind="stable")[:n].tolist())
    return [samples[i] for i in chosen]


class Row(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


RowT = TypeVar("RowT", bound=Row)
ItemT = TypeVar("ItemT")

GROUP_KINDS = (("race_x_gender", "By race x gender (UTKFace labels)"), ("age_band", "By age band"))


@dataclass(frozen=True)
class Groups(Generic[RowT]):
    """One row per race x gender and per age band that has members, in a fixed order."""

    race_x_gender: dict[str, RowT]
    age_band: dict[str, RowT]

    def of_kind(self, kind: str) -> dict[str, RowT]:
        """The rows of ``kind`` (one of GROUP_KINDS' names)."""
        return self.race_x_gender if kind == "race_x_gender" else self.age_band

    def to_dict(self) -> dict[str, Any]:
        return {
            "race_x_gender": {name: row.to_dict() for name, row in self.race_x_gender.items()},
            "age_band": {name: row.to_dict() for name, row in self.age_band.items()},
        }


def band_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}" if hi < 200 else f"{lo}+"


def grouped(
    items: Sequence[ItemT],
    sample: Callable[[ItemT], Sample],
    row: Callable[[list[ItemT]], RowT],
    age_bands: Sequence[tuple[int, int]] = AGE_BANDS,
) -> Groups[RowT]:
    """``row`` of the items of each label group; ``sample`` gives an item's labels."""
    by_race: dict[str, RowT] = {}
    for race in RACES:
        for gender in GENDERS:
            members = [i for i in items if sample(i).race == race and sample(i).gender == gender]
            if members:
                by_race[f"{race} {gender}"] = row(members)
    by_age: dict[str, RowT] = {}
    for lo, hi in age_bands:
        members = [i for i in items if lo <= sample(i).age <= hi]
        if members:
            by_age[band_name(lo, hi)] = row(members)
    return Groups(by_race, by_age)
