"""Agreement figures between a reference model and its conversion, and the bars they must meet."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.boxes import iou_matrix


@dataclass(frozen=True)
class Bar:
    """One pass/fail criterion on a figure in the proof table."""

    metric: str
    op: str  # ">=" or "<="
    limit: float

    def holds(self, value: float) -> bool:
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def describe(self) -> str:
        return f"{self.op} {self.limit:g}"


def detection_agreement(reference: list[np.ndarray], candidate: list[np.ndarray], iou: float = 0.5) -> dict:
    """Recall/precision of ``candidate`` boxes against ``reference`` boxes, greedy one-to-one at IoU >= iou."""
    matched, n_ref, n_cand, ious = 0, 0, 0, []
    for ref, cand in zip(reference, candidate):
        n_ref += len(ref)
        n_cand += len(cand)
        m = iou_matrix(ref, cand)
        used: set[int] = set()
        for r in np.argsort(-m.max(axis=1)) if m.size else []:
            for c in np.argsort(-m[r]):
                if int(c) in used or m[r, c] < iou:
                    continue
                used.add(int(c))
                matched += 1
                ious.append(float(m[r, c]))
                break
    return {
        "reference_faces": n_ref,
        "candidate_faces": n_cand,
        "recall": matched / n_ref if n_ref else 1.0,
        "precision": matched / n_cand if n_cand else 1.0,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
    }


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    return float(np.mean(np.argmax(reference, axis=1) == np.argmax(candidate, axis=1)))


def max_abs_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
