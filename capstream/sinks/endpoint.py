"""The store owner's query endpoint: read-only SQL for other processes over loopback HTTP.

chDB lets one process open a data directory. While the sink holds it, it serves
``POST /query`` on 127.0.0.1 (an ephemeral port) through its own ``readonly=1`` session,
and writes ``<store>.sql.json`` (port, bearer token, pid; mode 0600) next to the store, so
only users who can read the data directory can query. ``capstream sql`` finds it there.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from capstream.sinks.query import QueryError, QueryResult, execute
from capstream.sinks.store import StoreBusyError

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20


def endpoint_file(store: Path) -> Path:
    """Where the owner of ``store`` advertises its endpoint."""
    return store.with_name(store.name + ".sql.json")


class QueryEndpoint:
    """Serves read-only queries on a readonly client until ``close``."""

    def __init__(self, client: Any, store: Path) -> None:
        self.client = client
        self.file = endpoint_file(store)
        self.token = secrets.token_urlsafe(24)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("sql endpoint: " + format, *args)

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if self.path != "/query":
                    self._reply(404, {"error": "only POST /query is served"})
                    return
                auth = self.headers.get("Authorization", "")
                if not secrets.compare_digest(auth, f"Bearer {endpoint.token}"):
                    self._reply(401, {"error": "missing or wrong token"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._reply(413, {"error": "query too large"})
                    return
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                    sql, params = str(request["sql"]), dict(request.get("params") or {})
                    result = execute(endpoint.client, sql, {k: str(v) for k, v in params.items()})
                except QueryError as exc:
                    self._reply(400, {"error": str(exc)})
                except (ValueError, KeyError, TypeError) as exc:
                    self._reply(400, {"error": f"bad request: {exc}"})
                else:
                    self._reply(200, result.to_json_dict())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="capstream-sql-endpoint", daemon=True
        )

    def start(self) -> QueryEndpoint:
        self._thread.start()
        tmp = self.file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"port": self.port, "token": self.token, "pid": os.getpid()}, f)
        os.replace(tmp, self.file)
        log.info("serving read-only SQL for other processes on 127.0.0.1:%d", self.port)
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        try:
            if json.loads(self.file.read_text()).get("pid") == os.getpid():
                self.file.unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def query_owner(
    store: Path, sql: str, params: dict[str, str], timeout: float = 300.0
) -> QueryResult | None:
    """Ask the process that owns ``store`` to run ``sql``; None if no owner serves it."""
    path = endpoint_file(store)
    try:
        info = json.loads(path.read_text())
        port, token, pid = int(info["port"]), str(info["token"]), int(info["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise StoreBusyError(f"cannot read {path}: {exc}") from exc
    if not _alive(pid):
        return None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/query",
        data=json.dumps({"sql": sql, "params": params}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(request, timeout=timeout) as response:
            return QueryResult.from_json_dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise QueryError(message) from exc
    except TimeoutError as exc:
        raise QueryError(f"no answer from the store owner (pid {pid}) in {timeout:.0f}s") from exc
    except (urllib.error.URLError, ConnectionError):
        return None  # stale file: the owner is gone or not listening
