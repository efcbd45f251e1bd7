"""A failed delivery is visible on the notifier's Prometheus endpoint, not only on the DLQ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from capstream.notifier.dispatcher import Dispatcher
from capstream.notifier.email import SmtpSender
from capstream.notifier.metrics import NotifierCollector, serve_metrics
from capstream.notifier.sentlog import SentLog
from capstream.notifier.service import Notifier, metrics_port_file
from capstream.streams.records import NotificationRecord
from capstream.streams.settings import Settings

T0 = 1_780_000_000_000


def note(nid: str) -> NotificationRecord:
    return NotificationRecord(
        notification_id=nid, account_id="acme", kind="policy_alert", policy_id="p1",
        recipients=["ops@acme.test"], subject="Policy crossed", body="tokens: 1200 > 1000",
        created_at_ms=T0,
    )  # fmt: skip


def scrape(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=5).text
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("capstream"))
    return {name: float(value) for name, value in samples}


async def test_refused_and_delivered_mail_are_counted_on_the_endpoint(
    tmp_path: Path, smtp_server: Any
) -> None:
    log = SentLog(tmp_path / "sent.sqlite3")
    dead: list[str] = []
    d = Dispatcher(log, SmtpSender(Settings(smtp_port=smtp_server.port, smtp_timeout_s=2.0)),
                   clock=lambda: T0, dead_letter=lambda dl, r, e: dead.append(r))  # fmt: skip
    port_file = metrics_port_file(tmp_path)
    server, port = serve_metrics(NotifierCollector(d.stats, log.counts), "127.0.0.1", 0, port_file)
    try:
        assert int(port_file.read_text()) == port
        for nid in ("n-ok-1", "n-ok-2"):
            log.enqueue(nid, "acme", ("email",), note(nid).to_bytes(), T0 + 3_600_000, (0, 1), T0)
        await d.run_once()  # both are delivered
        smtp_server.inbox.reply = "554 no thanks"
        log.enqueue("n-no", "acme", ("email",), note("n-no").to_bytes(), T0 + 3_600_000,
                    (0, 2), T0)  # fmt: skip
        await d.run_once()
        m = scrape(port)
    finally:
        server.shutdown()
        server.server_close()
    assert dead == ["failed"]
    assert m["capstream_notifier_failed_total"] == 1
    assert m["capstream_notifier_delivered_total"] == 2
    assert m['capstream_notifier_deliveries{status="failed"}'] == 1
    assert m['capstream_notifier_deliveries{status="sent"}'] == 2
    assert m['capstream_notifier_deliveries{status="pending"}'] == 0


def test_a_stopped_notifier_reports_no_deliveries(tmp_path: Path) -> None:
    notifier = Notifier(Settings(data_dir=tmp_path))
    collector = NotifierCollector(notifier.stats, notifier.delivery_counts)
    names = {m.name: m for m in collector.collect()}
    assert names["capstream_notifier_uncertain"].samples[0].value == 0
    assert {
        s.labels["status"]: s.value for s in names["capstream_notifier_deliveries"].samples
    } == dict.fromkeys(("pending", "sending", "sent", "failed", "expired", "uncertain"), 0)
