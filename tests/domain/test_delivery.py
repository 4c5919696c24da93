"""Delivery channels: the outbox and the webhook hand each batch over once."""

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

from nbo_platform.domain.delivery import LocalOutbox, WebhookChannel, batch_id, build_channel

RECORDS = ['{"message":"hi","notification_id":"n1"}', '{"message":"Olá, \\"José\\" ☕","notification_id":"n2"}']


def test_batch_id_depends_on_the_ids_only():
    assert batch_id(["b", "a"]) == batch_id(["a", "b"]) != batch_id(["a"])


def test_outbox_writes_a_batch_once(tmp_path):
    outbox = LocalOutbox(tmp_path)
    where = outbox.deliver("sms", "2025-06-02", "abc", RECORDS)
    first = (tmp_path / "sms" / "date=2025-06-02" / "abc.jsonl").read_text()
    assert where.endswith("abc.jsonl")
    outbox.deliver("sms", "2025-06-02", "abc", RECORDS[:1])  # a retried batch is not written again
    assert (tmp_path / "sms" / "date=2025-06-02" / "abc.jsonl").read_text() == first
    assert [json.loads(line) for line in first.splitlines()] == [json.loads(r) for r in RECORDS]


def test_webhook_posts_the_batch_with_its_idempotency_key(tmp_path):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers["Idempotency-Key"], body))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        channel = build_channel("webhook", tmp_path, f"http://127.0.0.1:{server.server_port}/notify")
        assert isinstance(channel, WebhookChannel)
        channel.deliver("push", "2025-06-02", "b1", RECORDS)
    finally:
        server.shutdown()
    assert received[0][0] == "b1"
    assert received[0][1] == {
        "channel": "push",
        "date": "2025-06-02",
        "batch": "b1",
        "idempotency_keys": ["n1", "n2"],  # each notification's id is its own key
        "notifications": [json.loads(r) for r in RECORDS],
    }


def test_a_delivered_record_is_the_notification_as_json(con):
    """DuckDB encodes each record: any text survives, keys in name order, the time as Python prints it."""
    from nbo_platform.defs.notifications.assets import DELIVERY_RECORD

    rows = con.execute(
        f"""
        SELECT {DELIVERY_RECORD} FROM (
            SELECT 'n1' AS notification_id, 'sms' AS channel, '+57 300 1234567' AS address,
                   'Olá "José"\\ 50% off' || chr(10) || 'today ☕' AS message, 7::BIGINT AS customer_id,
                   3::BIGINT AS ally_id, 'Café & Co' AS ally_name, 11::BIGINT AS store_id, NULL::VARCHAR AS store_name,
                   2::BIGINT AS campaign_id, TIMESTAMPTZ '2025-06-02 06:30:10.295+00' AS event_time
            UNION ALL
            SELECT 'n2', 'push', 'app:7', 'hi', 7, 3, 'Café & Co', 11, 'Store', 2, TIMESTAMPTZ '2025-06-02 23:59:59+00'
        )
        """
    ).fetchall()
    first, second = (json.loads(r) for (r,) in rows)
    assert list(first) == sorted(first)
    assert first["message"] == 'Olá "José"\\ 50% off\ntoday ☕' and first["store_name"] is None
    assert first["event_time"] == str(datetime(2025, 6, 2, 6, 30, 10, 295000, tzinfo=UTC))
    assert second["event_time"] == str(datetime(2025, 6, 2, 23, 59, 59, tzinfo=UTC))
    assert (first["customer_id"], first["ally_name"], second["channel"]) == (7, "Café & Co", "push")
    assert all("\n" not in r for (r,) in rows)  # one line per record
