"""``python -m capstream.chaos``: the full chaos run, then the negative control.

Exit 0 when the run passes every check and the negative control (a short run that drops one
event on purpose) fails as it must; 1 otherwise. Results: ``chaos-results/<timestamp>/``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from capstream.chaos.check import table
from capstream.chaos.faults import FaultCounts
from capstream.chaos.report import fault_table
from capstream.chaos.run import ChaosSpec, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m capstream.chaos", description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--rate", type=float, default=3_500.0, help="events/s offered")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("chaos-results"))
    ap.add_argument("--no-control", action="store_true", help="skip the negative control")
    ap.add_argument("--control-only", action="store_true", help="only the negative control")
    args = ap.parse_args(argv)
    out = args.out / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ok = True
    if not args.control_only:
        spec = ChaosSpec(out=out / "run", seed=args.seed, events=args.events,
                         accounts=args.accounts, rate=args.rate, workers=args.workers,
                         partitions=args.partitions)  # fmt: skip
        outcome = run(spec)
        print(f"\n{table(outcome.rows)}\n\n{fault_table(outcome.faults)}\n")
        print(f"chaos run: {'PASS' if outcome.ok else 'FAIL'}; results in {spec.out}")
        ok = outcome.ok
    if not args.no_control:
        # The same checker on a run that loses one event before the broker: it must fail.
        control = ChaosSpec(out=out / "negative-control", seed=args.seed + 1, events=20_000,
                            accounts=200, rate=5_000.0, workers=1, partitions=args.partitions,
                            counts=FaultCounts(0, 0, 0, 0, 1, 20), drop_event=12_345)  # fmt: skip
        neg = run(control)
        print(f"\nnegative control (event 12,345 of 20,000 dropped):\n{table(neg.rows)}")
        print(f"negative control: {'FAILED as it must' if not neg.ok else 'PASSED: BROKEN'}")
        ok = ok and not neg.ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
