"""Faust's side of the worker: the app's configuration and the patches it needs.

Kept apart from the wiring (``app.py``) so a reader of the agents does not wade through
broker settings, and so the patches are in one place: the worker consumer's fetch wait,
Faust's own offset bookkeeping turned off (the flusher commits), and the commit itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import faust

from capstream.processors.options import WorkerOptions
from capstream.streams.partitioner import kafka_partitioner
from capstream.streams.settings import Settings

log = logging.getLogger(__name__)
DECISION_LINGER_S = 0.002
"""The decisions producer's linger."""
FETCH_MAX_WAIT_MS = 10
FETCH_MIN_BYTES = 64 * 1024


def make_app(settings: Settings, options: WorkerOptions) -> Any:
    """The Faust app of one worker (tables, agents and tasks are added by ``Processors``)."""
    _short_fetch_wait()
    _no_standby_of_an_active()
    s, o = settings, options
    data = s.data_dir.resolve() / "processors"
    return faust.App(
        o.app_id(s.topic_prefix),
        broker=[f"kafka://{b.strip()}" for b in s.bootstrap_servers.split(",")],
        broker_credentials=_credentials(s),
        store="rocksdb://",
        datadir=str(data),
        tabledir=str(data / "tables"),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=s.usage_partitions,
        topic_replication_factor=s.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Offsets are committed by the flusher (``commit``), never by Faust's own
        # bookkeeping: these only set how often Faust would look (it finds nothing).
        broker_commit_interval=3600.0,
        broker_commit_every=1 << 62,
        broker_session_timeout=o.session_timeout_s,
        broker_heartbeat_interval=o.heartbeat_interval_s,
        producer_acks=-1,
        # Decisions of records a few ms apart share a produce request (at 5,000 events/s
        # in small records, one request per record cost the worker more than deciding).
        producer_linger=DECISION_LINGER_S,
        producer_partitioner=kafka_partitioner,
        processing_guarantee="at_least_once",
        stream_wait_empty=False,  # the flusher acks; shutdown and revoke flush first
        # Standbys read the same changelog topics as a recovery does (raw bytes into the
        # partition's RocksDB, then its persisted offset): see ``tables.py``.
        table_standby_replicas=o.standby_replicas,
        topic_disable_leader=True,
    )


def own_commits(consumer: Any) -> None:
    """Turn Faust's own commits off: its bookkeeping of acked offsets can count offsets as
    acked that no agent has processed (see :func:`commit`); the flusher commits instead."""
    consumer._filter_committable_offsets = _nothing_to_commit


async def commit(consumer: Any, offsets: dict[tuple[str, int], int]) -> None:
    """Commit ``offsets`` ((topic, partition) -> next offset) through Faust's consumer.

    Faust's own bookkeeping of acked offsets is not used: after a takeover its read position
    is set back by the seek to the committed offsets while records after it were already
    handed over, so it records the range in between as a "gap" and counts it as acked
    whether or not an agent processed it (a commit past records nobody processed); and those
    offsets, acked again, appear twice in its list, so its commits then advance one offset
    per commit (measured: a new owner's commits ~100 records behind for over a minute while
    its lag was 0).
    """
    tps = {faust.types.TP(topic, p): offset for (topic, p), offset in offsets.items()}
    await consumer._thread.commit(tps)
    committed = consumer._committed_offset  # so Faust's own commits never go back
    for tp, offset in tps.items():
        if (committed.get(tp) or -1) < offset:
            committed[tp] = offset


def restored(app: Any, topic: str) -> bool:
    """True if the tables of every partition of ``topic`` assigned to this worker are
    restored; if not, says why in the log (the next recovery's end tries again)."""
    why = unrestored(app, [tp.partition for tp in app.consumer.assignment() if tp.topic == topic])
    if why:
        log.warning("a recovery ended that did not restore this assignment (%s%s): its "
                    "partitions load when the next one ends", "; ".join(why[:3]),
                    f"; {len(why) - 3} more" if len(why) > 3 else "")  # fmt: skip
    return not why


def unrestored(app: Any, partitions: Iterable[int]) -> list[str]:
    """What keeps the tables of ``partitions`` from counting as restored, as "topic[p]: why"
    lines ([] when every changelog partition of theirs was read to its end).

    Faust calls the tables' recovery callbacks when a recovery completes, but a rebalance can
    overtake a recovery about to complete: the callbacks then run with the new assignment in
    place, whose added partitions were never read. In a chaos run a worker loaded two such
    partitions with 0 accounts and processed their records from the committed offsets on:
    every total before those offsets was lost, and the empty states were written over the
    changelog. So a partition counts as restored only if no newer recovery is pending and
    this recovery took a highwater for each of its changelog partitions and read that far
    (Faust's own test of "nothing left to read", ``Recovery.need_recovery``).
    """
    recovery = app.tables.recovery
    if recovery.signal_recovery_start.is_set() or recovery.in_recovery:
        return ["a newer recovery is pending"]
    why: list[str] = []
    for table in app.tables.values():
        topic = table.changelog_topic_name
        for p in partitions:
            tp = faust.types.TP(topic, p)
            highwater = recovery.active_highwaters.get(tp)
            offset = recovery.active_offsets.get(tp)
            if tp not in recovery.active_tps:
                why.append(f"{topic}[{p}]: not among the partitions being restored")
            elif highwater is None:
                why.append(f"{topic}[{p}]: no highwater taken by this recovery")
            elif highwater >= 0 and (offset is None or offset < highwater):
                why.append(f"{topic}[{p}]: read to {offset} of {highwater}")
    return why


def _short_fetch_wait() -> None:
    """Make Faust's worker consumer fetch at most every ``FETCH_MAX_WAIT_MS`` (Faust
    hard-codes 1,500 ms; aiokafka keeps one fetch request per broker in flight, and records
    arriving meanwhile wait: measured 0.5-1.5 s of added event-to-decision latency at
    1,000-5,000 events/s) but not as soon as one byte is there: with a minimum of
    ``FETCH_MIN_BYTES`` the broker gathers the records of a few milliseconds per response.
    Answering each small record with its own fetch cost the worker ~40 % of its CPU at 5,000
    events/s in small records (request encoding, socket writes, thread wake-ups)."""
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    if getattr(thread, "_capstream_fetch_wait", False):
        return
    create = thread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # both read by consumer.start()
        consumer._fetch_min_bytes = FETCH_MIN_BYTES
        return consumer

    setattr(thread, "_create_worker_consumer", create_worker_consumer)  # noqa: B010
    setattr(thread, "_capstream_fetch_wait", True)  # noqa: B010


def _no_standby_of_an_active() -> None:
    """Never treat a partition this worker owns as a standby of it too.

    Faust's assignor can hand one worker the same changelog partition as an active *and* a
    standby (seen in the chaos run after a member left: the survivor kept its standbys of
    5 and 6 and was given them as actives). Faust's recovery then resumes it as a standby and
    applies the worker's own changelog writes back into the store, in buffers of 1,000,
    after the flusher put newer values directly (``tables.py``), moving the persisted offset
    with them: a later load (a restart on the same data dir) found older values, the epoch
    among them, under an offset at the changelog's end. Standbys are what is left once the
    actives are taken out."""
    from faust.assignor.partition_assignor import PartitionAssignor

    if getattr(PartitionAssignor, "_capstream_standbys", False):
        return
    standbys = PartitionAssignor.assigned_standbys

    def assigned_standbys(self: Any) -> Any:
        return standbys(self) - self.assigned_actives()

    setattr(PartitionAssignor, "assigned_standbys", assigned_standbys)  # noqa: B010
    setattr(PartitionAssignor, "_capstream_standbys", True)  # noqa: B010


def _nothing_to_commit(tps: Any) -> dict[Any, int]:
    return {}


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    conf: dict[str, Any] = settings.aiokafka_config()
    if settings.sasl_mechanism:
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=conf.get("sasl_plain_password"),
            mechanism=settings.sasl_mechanism,
            ssl_context=conf.get("ssl_context"),
        )
    return faust.SSLCredentials(conf["ssl_context"])
