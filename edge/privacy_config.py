"""The ``privacy`` section: jurisdiction and context modes, and the rules they impose on ``attributes``.

The rules follow the EU AI Act (Regulation (EU) 2024/1689); they are checked when the root config
is built (``Config._problems`` calls ``privacy_problems``), so ``edge check`` and ``edge run`` both
refuse a config that breaks one. The defaults (region ``none``, context ``public``) impose nothing.
This encodes a reading of the articles, not legal advice (README, "Jurisdiction and context modes").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge.attributes import AttributesConfig
from edge.config.fields import boolean, choice, leaf

REGIONS = ("none", "eu")
CONTEXTS = ("public", "workplace", "education")

ART_5_1_F = "EU AI Act Art. 5(1)(f)"
ART_5_1_G = "EU AI Act Art. 5(1)(g)"
ART_50_3 = "EU AI Act Art. 50(3)"


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """Where the device runs and among whom; ``notice_acknowledged`` is the operator's statement
    that the people in view are informed of what runs (EU AI Act Art. 50(3))."""

    region: str = leaf("none", choice(*REGIONS))
    context: str = leaf("public", choice(*CONTEXTS))
    notice_acknowledged: bool = leaf(False, boolean())


def privacy_problems(privacy: PrivacyConfig, attributes: AttributesConfig) -> Iterator[tuple[str, Any, str]]:
    """What the jurisdiction and context modes refuse, as (key path from the root, value, expected)."""
    if privacy.region == "eu" and attributes.ethnicity:
        yield (
            "attributes.ethnicity",
            True,
            f"false with privacy.region eu: biometric categorisation inferring race or ethnic origin "
            f"is prohibited ({ART_5_1_G})",
        )
    if privacy.context in ("workplace", "education") and attributes.expression:
        yield (
            "attributes.expression",
            True,
            f"false with privacy.context {privacy.context}: emotion recognition in the workplace and "
            f"in education institutions is prohibited ({ART_5_1_F})",
        )
    running = [name for name in ("expression", "gender", "age") if getattr(attributes, name)]
    if privacy.region == "eu" and running and not privacy.notice_acknowledged:
        yield (
            "privacy.notice_acknowledged",
            privacy.notice_acknowledged,
            f"true with privacy.region eu and {', '.join(f'attributes.{n}' for n in running)} on: the "
            f"people in view must be informed of emotion recognition or biometric categorisation "
            f"({ART_50_3}); inform them, then set privacy.notice_acknowledged: true (or switch those off)",
        )
