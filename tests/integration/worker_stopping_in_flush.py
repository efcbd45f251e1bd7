"""``capstream worker`` that freezes itself (SIGSTOP) in the middle of a flush, on request.

Run as a script by ``test_worker_pause``: once the file named by ``CAPSTREAM_TEST_STOP_FILE``
exists, the next table write of a flush puts its values into RocksDB and hands them to the
changelog producer, and then the process stops itself before the producer sends them and
before the rest of the flush: the pause falls inside a flush, with changelog batches waiting
to go out. The test resumes it with SIGCONT.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from capstream.cli import main
from capstream.processors.tables import TableStore

_write = TableStore.write
_TRIGGER = Path(os.environ["CAPSTREAM_TEST_STOP_FILE"])


async def write(self: TableStore, partition: int, values: list[Any], producer: Any) -> Any:
    result = await _write(self, partition, values, producer)
    if values and _TRIGGER.exists():  # noqa: ASYNC240 - a test hook, once
        _TRIGGER.unlink()  # noqa: ASYNC240
        os.kill(os.getpid(), signal.SIGSTOP)
    return result


TableStore.write = write  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv = ["capstream", "worker"]
    main()
