"""Delivery: handing sent notifications to channels, exactly once per notification_id.

Each sent notification is put in exactly one batch, recorded in ``lake/delivery_batches/`` before the
batch is handed over (a write-ahead intent); the ledger (``lake/delivery_log/``) records each hand-over
after it, ``delivered`` or ``failed`` with the channel's error. A batch without a delivered record is
handed over again, with the same notifications under the same batch id, so a run that stops between the
hand-over and the ledger write repeats exactly that batch, and the channel recognises it: the
``notification_id`` of each record is its idempotency key (v2 "Delivery exactly once"), and the batch id,
a digest of the batch's ids, is the key of the hand-over as a whole.

Channels:
- :class:`LocalOutbox` (default): one JSON Lines file per batch under ``outbox/<channel>/date=D/``,
  written under a temporary name and renamed; an existing batch file is not written again, so the
  outbox holds each notification_id once across all its files.
- :class:`WebhookChannel`: POSTs each batch as JSON to an HTTP endpoint (``NBO_WEBHOOK_URL``), with
  the batch id as ``Idempotency-Key`` and each notification's id as its own ``idempotency_key``: the
  shape of a real provider integration (SNS, an SMS or e-mail gateway) that the receiving side
  de-duplicates. A status of 300 or more, or no answer, is a refusal.
A new provider implements :class:`Channel` and is added to ``CHANNEL_KINDS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


def batch_id(notification_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(notification_ids)).encode()).hexdigest()[:24]


@dataclass
class DeliveryOutcome:
    """What one date's delivery did: notifications delivered per channel, batches refused (ids, error)."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, tuple[int, str]] = field(default_factory=dict)


class Channel(Protocol):
    kind: str

    def deliver(self, channel: str, date: str, batch: str, records: Sequence[str]) -> str:
        """Hand ``records`` (one JSON object per notification, as UTF-8 text on one line, in time
        order) over; return where they went, or raise when the channel refuses them. Must be idempotent
        on ``batch`` and on each record's ``notification_id``."""
        ...


class LocalOutbox:
    kind = "outbox"

    def __init__(self, outbox_dir: Path):
        self.outbox_dir = Path(outbox_dir)

    def deliver(self, channel: str, date: str, batch: str, records: Sequence[str]) -> str:
        target = self.outbox_dir / channel / f"date={date}" / f"{batch}.jsonl"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("".join(r + "\n" for r in records))
            os.replace(tmp, target)
        return str(target)


class WebhookChannel:
    kind = "webhook"

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url = url
        self.timeout_s = timeout_s

    def deliver(self, channel: str, date: str, batch: str, records: Sequence[str]) -> str:
        # The records are JSON already: the body is put together around them, not parsed and re-encoded.
        head = json.dumps({"channel": channel, "date": date, "batch": batch})[:-1]
        keys = json.dumps([json.loads(r)["notification_id"] for r in records])
        body = f'{head}, "idempotency_keys": {keys}, "notifications": [{", ".join(records)}]}}'
        req = urllib.request.Request(
            self.url,
            data=body.encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json", "Idempotency-Key": batch},
        )
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"webhook {self.url}: HTTP {resp.status} for batch {batch}")
        return f"{self.url}#{batch}"


CHANNEL_KINDS = ("outbox", "webhook")


def build_channel(kind: str, outbox_dir: Path, webhook_url: str | None = None) -> Channel:
    if kind == "outbox":
        return LocalOutbox(outbox_dir)
    if kind == "webhook":
        if not webhook_url:
            raise ValueError("delivery kind 'webhook' needs NBO_WEBHOOK_URL")
        return WebhookChannel(webhook_url)
    raise ValueError(f"unknown delivery kind {kind!r} (known: {', '.join(CHANNEL_KINDS)})")
