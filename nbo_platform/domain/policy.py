"""The notification policy file (``reference/policy.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml


class PolicyError(ValueError):
    pass


# A day's notifications are credited with the purchases of that day and the next (the attribution
# assets' partition mapping, the plan's "day before", the marts' tests): a longer window would miss some.
MAX_ATTRIBUTION_WINDOW_MINUTES = 1440


# Settings that may be null: no limit.
NULLABLE = ("max_delay_minutes",)


@dataclass(frozen=True)
class Policy:
    cooldown_minutes: float = 60
    attribution_window_minutes: float = 15
    max_accuracy_m: float = 100
    # An entry more than this older than the watermark its ping file met is `expired` (v2); None: no limit.
    max_delay_minutes: float | None = 30


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PolicyError(f"{source}: invalid YAML: {e}") from e
    doc = doc or {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: expected a mapping of settings")
    known = {f.name for f in fields(Policy)}
    unknown = set(doc) - known
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {sorted(unknown)} (allowed: {sorted(known)})")
    for k, v in doc.items():
        if v is None and k in NULLABLE:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise PolicyError(f"{source}: {k} must be a non-negative number, got {v!r}")
    window = doc.get("attribution_window_minutes", 0)
    if window > MAX_ATTRIBUTION_WINDOW_MINUTES:
        raise PolicyError(
            f"{source}: attribution_window_minutes must be at most {MAX_ATTRIBUTION_WINDOW_MINUTES} (a day), "
            f"got {window!r}: a day's notifications are credited with the purchases of that day and the next"
        )
    return Policy(**doc)


def load_policy(path: Path) -> Policy:
    """The policy in ``path``; the defaults when the file does not exist."""
    if not path.exists():
        return Policy()
    return parse_policy(path.read_text(), source=str(path))
