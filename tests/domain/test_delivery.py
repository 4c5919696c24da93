"""Delivery channels: the outbox and the webhook hand each batch over once."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from nbo_platform.domain.delivery import LocalOutbox, WebhookChannel, batch_id, build_channel

RECORDS = [{"notification_id": "n1", "message": "hi"}, {"notification_id": "n2", "message": "hello"}]


def test_batch_id_depends_on_the_ids_only():
    assert batch_id(["b", "a"]) == batch_id(["a", "b"]) != batch_id(["a"])


def test_outbox_writes_a_batch_once(tmp_path):
    outbox = LocalOutbox(tmp_path)
    where = outbox.deliver("sms", "2025-06-02", "abc", RECORDS)
    first = (tmp_path / "sms" / "date=2025-06-02" / "abc.jsonl").read_text()
    assert where.endswith("abc.jsonl")
    outbox.deliver("sms", "2025-06-02", "abc", RECORDS[:1])  # a retried batch is not written again
    assert (tmp_path / "sms" / "date=2025-06-02" / "abc.jsonl").read_text() == first
    assert [json.loads(line)["notification_id"] for line in first.splitlines()] == ["n1", "n2"]


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
    assert received[0][1]["channel"] == "push" and len(received[0][1]["notifications"]) == 2
