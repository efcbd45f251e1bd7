"""Shared test vectors: what every gateway SDK (Python, TypeScript) must produce, byte for byte.

``capstream vectors generate`` writes them to ``testdata/vectors/`` from the reference code:
the Avro codecs (``capstream.streams.codecs``, fastavro), the core's ``gate`` and
``FallbackLedger``, and Kafka's murmur2 partitioner. Both SDKs' test suites replay them, and
``tests/unit/gateway/test_vectors.py`` fails when the files differ from what this module
generates now (a schema, a rule or a text changed: regenerate, and the TypeScript tests show
what the TypeScript SDK must change).

Files (JSON; Avro bytes as lowercase hex; times in epoch ms; longs beyond 2**53 - 1 as
decimal strings so that JavaScript reads them exactly):

- ``partitions.json``: keys (UTF-8, given as hex) -> signed murmur2 and the partition for
  several partition counts.
- ``usage_batches.json``: ``UsageBatch`` records (single-object encoding) of given events,
  and events ``record()`` must refuse, with the field it names.
- ``control_states.json``: control topic values with the state they decode to, and values
  that must be refused, with the ``DecodeError`` reason.
- ``cap_hits.json``: ``CapHit`` records of given hits.
- ``conversation_sent.json``: ``ConversationSent`` records (what gateways sent, shared
  through the gateway-sent topic) with their topic keys.
- ``prices.json``: price tables (records and bytes), the credits derived for calls given
  no credits (null: unpriced), and money amounts to credits.
- ``gate_sequences.json``: states held by a gateway, then calls (account, bot, conversation,
  category, now) in order with the verdict of each; one fresh ledger per sequence.

Modules: ``generate.py`` (the files, ``generate``/``write``), ``check.py`` (``stale``), and the
cases: ``usage_cases.py``, ``record_cases.py`` (partitions, control states, cap hits,
conversation sent), ``gate_cases.py``, ``price_cases.py``; ``common.py`` (the fixed clock,
JSON longs).
"""

from capstream.gateway.vectors.check import stale
from capstream.gateway.vectors.generate import DEFAULT_DIR, FILES, generate, write

__all__ = ["DEFAULT_DIR", "FILES", "generate", "stale", "write"]
