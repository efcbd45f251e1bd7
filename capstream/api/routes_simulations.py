"""``POST /v1/accounts/{a}/simulations``: try a draft policy or cap behaviour on the account's
past traffic (issue 15; the engine is ``capstream.simulation``).

A range holding at most ``SYNC_EVENTS`` events is answered at once (200, the result). A
longer one answers 202 with a job to poll at ``GET .../simulations/{job_id}``; jobs run one
or two at a time in background threads and are kept (newest ``KEPT_JOBS``) in memory. On a
host with two or more CPUs a job runs its draft side in a second process
(``capstream.simulation.parallel``; so at most ``MAX_RUNNING`` such processes): if that one
fails or dies, the job is ``failed`` with the reason (``SimulationFailedError``).
Same key, tenancy and error rules as every route: another tenant's account or job is 404.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel

from capstream.api.context import ApiContext, CallerDep, Ctx, account_scope
from capstream.api.errors import (
    ErrorBody,
    FieldError,
    InvalidError,
    NotFoundError,
    UnavailableError,
    error_responses,
)
from capstream.api.models import ID_PATTERN
from capstream.api.money import account_prices
from capstream.api.routes_accounts import tenant_of
from capstream.errors import CapstreamError
from capstream.simulation import (
    EventSource,
    SimulationBody,
    SimulationError,
    check_draft,
    check_range,
    configs,
    reads_attributes,
    simulate,
)
from capstream.simulation.draft import parse_instant
from capstream.simulation.source import Plan

router = APIRouter(prefix="/v1/accounts/{account_id}", tags=["simulations"])
AccountId = Annotated[str, Path(pattern=ID_PATTERN, description="The account")]
SYNC_EVENTS = 200_000
"""Ranges holding at most this many events are simulated within the request."""
MAX_RUNNING = 2
KEPT_JOBS = 100


class BusyError(UnavailableError):
    code = "busy"


class Progress(BaseModel):
    events_done: int
    events_total: int


class SimulationOut(BaseModel):
    """A simulation: ``done`` with its ``result``, ``running`` (poll ``poll``), or
    ``failed`` with ``error``."""

    job_id: str
    status: Literal["running", "done", "failed"]
    progress: Progress
    poll: str
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


@dataclass
class Job:
    job_id: str
    account_id: str
    total: int
    done: int = 0
    status: Literal["running", "done", "failed"] = "running"
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def out(self) -> SimulationOut:
        with self.lock:
            return SimulationOut(
                job_id=self.job_id,
                status=self.status,
                progress=Progress(events_done=self.done, events_total=self.total),
                poll=f"/v1/accounts/{self.account_id}/simulations/{self.job_id}",
                result=self.result,
                error=self.error,
            )


class Jobs:
    """The API process's simulation jobs (bounded; the oldest finished ones are forgotten)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, account_id: str, total: int) -> Job:
        with self._lock:
            running = sum(1 for j in self._jobs.values() if j.status == "running")
            if running >= MAX_RUNNING:
                raise BusyError(
                    f"{running} long simulations are running; try again when one is done"
                )
            job = Job(uuid.uuid4().hex, account_id, total)
            self._jobs[job.job_id] = job
            while len(self._jobs) > KEPT_JOBS:
                old = next((k for k, j in self._jobs.items() if j.status != "running"), None)
                if old is None:
                    break
                del self._jobs[old]
            return job

    def get(self, account_id: str, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.account_id == account_id else None


def _jobs(request: Request) -> Jobs:
    jobs: Jobs | None = getattr(request.app.state, "simulations", None)
    if jobs is None:
        jobs = request.app.state.simulations = Jobs()
    return jobs


def _invalid(exc: SimulationError) -> InvalidError:
    return InvalidError(exc.message, fields=[FieldError(field=exc.field, message=exc.message)])


def _run(job: Job, source: EventSource, plan: Plan, args: tuple[Any, ...]) -> None:
    def progress(done: int, total: int) -> None:
        with job.lock:
            job.done, job.total = done, total

    try:
        result = simulate(source, *args, progress=progress, plan=plan)
    except CapstreamError as exc:
        body = exc.body()["error"] if isinstance(exc, UnavailableError) else None
        with job.lock:
            job.status = "failed"
            job.error = ErrorBody(**body) if body else ErrorBody(code="failed", message=str(exc))
        return
    except Exception as exc:  # a defect: the job fails, the API keeps serving
        with job.lock:
            job.status = "failed"
            job.error = ErrorBody(
                code="failed", message=f"simulation failed ({type(exc).__name__})"
            )
        return
    with job.lock:
        job.status, job.result = "done", result


@router.post(
    "/simulations",
    response_model=SimulationOut,
    responses={202: {"model": SimulationOut, "description": "Started: poll `poll`"},
               **error_responses(401, 404, 422, 503)},
)  # fmt: skip
async def create_simulation(
    account_id: AccountId,
    body: SimulationBody,
    ctx: Ctx,
    caller: CallerDep,
    request: Request,
    response: Response,
) -> SimulationOut:
    """Replay the account's events of a past range (default the last 30 days, at most 93)
    through the current configuration and through the draft, side by side: alerts, blocks,
    caps reached and resumed, downgrade and throttle periods, gated calls, usage counted."""
    account_scope(ctx, caller, account_id)
    source, plan, args = await asyncio.to_thread(_prepare, ctx, account_id, body)
    jobs = _jobs(request)
    job = jobs.start(account_id, plan.total)
    if plan.total <= SYNC_EVENTS:
        await asyncio.to_thread(_run, job, source, plan, args)
        out = job.out()
        if out.status == "failed" and out.error is not None and out.error.code == "unavailable":
            raise UnavailableError(out.error.message)
        return out
    threading.Thread(
        target=_run, args=(job, source, plan, args), name=f"simulation-{job.job_id[:8]}",
        daemon=True,
    ).start()  # fmt: skip
    response.status_code = 202
    out = job.out()
    response.headers["Location"] = out.poll
    return out


def _prepare(
    ctx: ApiContext, account_id: str, body: SimulationBody
) -> tuple[EventSource, Plan, tuple[Any, ...]]:
    now = ctx.clock()
    policies = ctx.view.policies(account_id)
    tenant = tenant_of(ctx, account_id)
    try:
        prices = account_prices(ctx, account_id) if hasattr(ctx.view, "prices") else None
        draft = check_draft(account_id, body, policies, tenant, now, prices)
        lo, hi = check_range(parse_instant(body.from_, "from"), parse_instant(body.to, "to"), now)
    except SimulationError as exc:
        raise _invalid(exc) from exc
    current, drafted = configs(policies, tenant, draft)
    source = EventSource(
        ctx.clickhouse(), account_id, lo, hi, columns=ctx.clickhouse_columns(),
        attributes=reads_attributes(current.policies, drafted.policies),
    )  # fmt: skip
    return source, source.plan(), (current, drafted, draft)


@router.get(
    "/simulations/{job_id}",
    response_model=SimulationOut,
    responses=error_responses(401, 404),
)
async def get_simulation(
    account_id: AccountId,
    job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The job")],
    ctx: Ctx,
    caller: CallerDep,
    request: Request,
) -> SimulationOut:
    """A simulation job: its progress, then its result (or why it failed)."""
    account_scope(ctx, caller, account_id)
    job = _jobs(request).get(account_id, job_id)
    if job is None:
        raise NotFoundError(f"simulation {job_id!r} not found")
    return job.out()
