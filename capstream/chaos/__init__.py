"""The chaos harness: the whole pipeline (N workers, the sink, the notifier, a broker of its
own) under sustained seeded load while a scheduler injects faults, then checked end to end.

``python -m capstream.chaos`` (``make chaos``) runs the full version; ``tests/integration/
test_chaos_short.py`` runs a short one inside ``make test``. See README.md.
"""
