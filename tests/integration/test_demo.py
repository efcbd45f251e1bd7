"""``capstream demo`` on the test broker: every tenant's story happens, seen through the API,
and the demo stops by itself after ``--duration`` leaving no process behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from capstream.streams.local_kafka import free_port

DURATION_S = 50


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _eventually(what: str, check: Callable[[], bool], deadline: float, log: Path) -> None:
    while not check():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        assert time.monotonic() < deadline, f"never saw: {what}\n{tail}"
        time.sleep(1.0)


def test_demo_tells_every_story_and_stops_cleanly(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CAPSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CAPSTREAM_DATA_DIR": str(tmp_path),
        "CAPSTREAM_API_PORT": str(free_port()),
        "COLUMNS": "160",
    }
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "capstream.cli", "demo", "--duration", str(DURATION_S)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        info_file = tmp_path / "demo" / "demo.json"
        up = time.monotonic() + 120
        _eventually("the demo up", lambda: info_file.exists() or proc.poll() is not None, up, log)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
        info = json.loads(info_file.read_text())
        assert info["broker_pid"] is None  # the test's broker, not one of its own
        assert info["topic_prefix"].startswith("capstream-demo-")
        keys = {t["account_id"]: t["api_key"] for t in info["tenants"]}
        assert set(keys) == {"acme", "globex", "initech", "umbrella"}
        api = httpx.Client(base_url=info["api"], timeout=10, trust_env=False)

        def get(account: str, path: str) -> Any:
            r = api.get(f"/v1/accounts/{account}/{path}",
                        headers={"Authorization": f"Bearer {keys[account]}"})  # fmt: skip
            return r.json() if r.status_code == 200 else None

        def state(account: str, bot: str) -> dict[str, Any]:
            live = get(account, "live") or {"bots": []}
            return next((b["state"] or {} for b in live["bots"] if b["bot_id"] == bot), {})

        end = time.monotonic() + DURATION_S - 5
        now_ms = lambda: time.time_ns() // 1_000_000  # noqa: E731

        # initech: the per-hour token policy pauses sales-bot and emails the owner
        _eventually("initech's sales-bot paused by its policy", lambda: (
            state("initech", "sales-bot").get("block_policy_id") == "per-hour-tokens"
            and state("initech", "sales-bot")["blocked_until_ms"] > now_ms()
        ), end, log)  # fmt: skip
        _eventually("initech's policy alert in the demo inbox", lambda: any(
            m["kind"] == "policy_alert" and m["rcpt_to"] == ["admin@initech.example"]
            for m in (get("initech", "mailbox") or {"messages": []})["messages"]
        ), end, log)  # fmt: skip
        assert state("initech", "support-bot").get("blocked_until_ms") is None
        # ... and the notifier's Prometheus endpoint counts that delivery
        port = int((tmp_path / "demo" / "notifier" / "metrics.port").read_text())
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False).text
        assert re.search(r"^capstream_notifier_delivered_total [1-9]", metrics, re.M), metrics

        # umbrella: the looping conversation throttles agent-bot only
        _eventually("umbrella's agent-bot throttled for a loop", lambda: (
            state("umbrella", "agent-bot").get("batching_interval_s") == 60
            and "loop" in (state("umbrella", "agent-bot").get("throttle_reason") or "")
        ), end, log)  # fmt: skip
        assert state("umbrella", "frontdesk").get("batching_interval_s") in (None, 3)

        # acme (free): the daily text cap → amber rows counting attempts, upgrade call
        _eventually("acme's amber rows", lambda: bool(get("acme", "feed")), end, log)
        rows = get("acme", "feed")
        assert all(r["cta"] == "Upgrade to Starter →" and r["attempts"] >= 1 for r in rows)
        assert all("AI reply paused — daily AI replies credit exhausted" in r["message"]
                   for r in rows)  # fmt: skip
        caps = {(c["projection"]["category"], c["projection"]["period"]): c
                for c in get("acme", "live")["caps"]}  # fmt: skip
        assert caps[("text", "daily")]["projection"]["cap_reached"] is True

        # --duration: the demo stops by itself, with everything it started
        assert proc.wait(DURATION_S + 60) == 0, log.read_text()[-3000:]
        assert "every process it started has exited" in log.read_text()
        # the progress lines showed events flowing and decisions made
        seen = re.findall(r"events delivered ([\d,]+), decisions ([\d,]+)", log.read_text())
        events, decisions = (int(n.replace(",", "")) for n in seen[-1])
        assert events > 0 and decisions > 0, seen
        left = [pid for pid in info["pids"].values() if _alive(pid)]
        assert left == [], f"left behind: {left}"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
