"""The HTTP API of the read side (``campaign-analytics api``), on aiohttp.

Live aggregates (campaign list, summary, A/B statistics, time series, server-sent
events) come from ``LiveState``, which follows the compacted metric topics; the
message log, replies, clicks and the CSV export come from ClickHouse through the
store interface (``sinks.open_reader``: a server, or the embedded engine's owner).
Store calls block, so they run in threads. Every answer says how current it is
(``as_of``). The routes are described by ``streams/api/openapi.py``.

Errors are ``{"error": CODE, "detail": TEXT}``: 400 bad parameters, 401 a missing
or wrong token (when ``CA_API_TOKEN`` is set), 404 an unknown campaign or route, 409
another retry round won, or a winner decision refused or made before (with the verdict
or that decision), 415 a command without a JSON body, 503 with ``Retry-After`` while a
backend cannot answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import io
import itertools
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from projections.ab import AbConfig, ab_statistics, first_attempt_counts
from projections.costs import PriceTable
from projections.errors import CampaignAnalyticsError
from projections.message_log import MESSAGE_STATUSES, MessageLogRow
from projections.metrics import WINDOW_METRICS
from projections.winner import WinnerRefusedError, WinnerRequestError
from sinks.errors import SinkError
from sinks.export import write_csv
from sinks.retry_reads import read_retry_inputs
from sinks.store import ClickHouseStore
from streams.api.live import LiveState, MetricsFollower, Snapshot, Subscription
from streams.api.log_reads import LogReads
from streams.api.openapi import openapi_document
from streams.api.pages import add_pages
from streams.api.retries import RetryConflictError, request_retries
from streams.api.timefmt import iso, parse_instant
from streams.api.winner import WinnerDecidedError, decide_winner, decision_body, read_decision
from streams.codecs.prices import load_prices
from streams.settings import ConfigurationError, Settings

log = logging.getLogger(__name__)

DEFAULT_PAGE = 100
MAX_PAGE = 500
HEARTBEAT_SECONDS = 10.0  # a comment line at least this often keeps proxies and clients sure
SLOW_CLIENT_SECONDS = 10.0  # a stream whose socket stays full this long is closed
EXPORT_CHUNK_ROWS = 2_000
RETRY_AFTER = 2

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE: web.AppKey[LiveState] = web.AppKey("state", LiveState)
FOLLOWER: web.AppKey[MetricsFollower | None] = web.AppKey("follower")
STORE: web.AppKey[ClickHouseStore] = web.AppKey("store")
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
AB_CONFIG: web.AppKey[AbConfig] = web.AppKey("ab_config", AbConfig)
OPENAPI = web.AppKey("openapi", bytes)
STREAMS = web.AppKey("streams", set[Subscription])
AS_OF = web.AppKey("as_of", dict[str, tuple[float, str | None]])
LOG_READS = web.AppKey("log_reads", LogReads)  # message-log pages read ahead
# A log page's as_of is at most this old: one as_of query per campaign a second, not
# one per page (it was a third of a page's cost in the engine under 50 pages/s;
# benchmarks/load.py). An older as_of understates the log, it never overstates it.
AS_OF_SECONDS = 1.0
AS_OF_CAMPAIGNS = 10_000  # cached at most; past it the cache starts again
as_of_clock = time.monotonic  # tests set their own
# ClickHouse reads of log pages at once; one more waits up to STORE_WAIT_SECONDS, then
# gets 503 with Retry-After. Unbounded, an overload queued every request in the
# thread pool behind reads whose clients had already given up, and no page was
# answered in time any more (benchmarks/load.py; docs/performance.md).
STORE_CALLS = 4
STORE_WAIT_SECONDS = 2.0
STORE_SLOTS = web.AppKey("store_slots", asyncio.Semaphore)
PRICES: web.AppKey[PriceTable | None] = web.AppKey("prices")  # CA_PRICES_FILE: the CSV's cost


class ApiError(Exception):
    """An error answer: HTTP status, a stable code and a readable detail."""

    def __init__(self, status: int, code: str, detail: str,
                 headers: dict[str, str] | None = None, more: dict[str, Any] | None = None
                 ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.more = more or {}  # fields of the answer besides error and detail


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def _error(exc: ApiError) -> web.Response:
    return _json({"error": exc.code, "detail": exc.detail, **exc.more}, exc.status,
                 exc.headers)


def _unavailable(detail: str, retry_after: float | None = None) -> ApiError:
    seconds = max(1, round(retry_after or RETRY_AFTER))
    return ApiError(503, "unavailable", detail, {"Retry-After": str(seconds)})


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc)
    except SinkError as exc:
        log.warning("ClickHouse could not answer %s: %s", request.path, exc)
        return _error(_unavailable(f"ClickHouse cannot answer now: {exc}", exc.retry_after))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return _error(ApiError(exc.status, code, exc.reason, allow))


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):  # constant time
                return _error(ApiError(401, "unauthorized", "a valid bearer token is required",
                                       {"WWW-Authenticate": 'Bearer realm="campaign-analytics"'}))
        return await handler(request)

    return middleware


# --- parameters -------------------------------------------------------------------------


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "bad_parameter", f"limit must be an integer within 1..{MAX_PAGE}")
    return int(raw)


def _encode_cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def _cursor(request: web.Request, *types: type) -> list[Any] | None:
    raw = request.query.get("cursor")
    if raw is None:
        return None
    try:
        values = orjson.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_",
                                               validate=True))
    except (binascii.Error, ValueError):
        values = None
    if (not isinstance(values, list) or len(values) != len(types)
            or not all(type(v) is t for v, t in zip(values, types, strict=True))):
        raise ApiError(400, "bad_cursor", "cursor is not one this API gave out")
    return values


def _only(request: web.Request, *names: str) -> None:
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise ApiError(400, "bad_parameter", f"unknown parameter(s): {', '.join(unknown)}")


def _require_live(request: web.Request) -> None:
    """503 until the metric topics have been read to their end once."""
    follower = request.app[FOLLOWER]
    if follower is not None and not follower.ready.is_set():
        raise _unavailable(f"the metric topics are not read yet: {follower.problem}")


def _snapshot(request: web.Request) -> Snapshot:
    """The campaign of the path; 503 until the metric topics are read, 404 if unknown."""
    _require_live(request)
    campaign_id = request.match_info["campaign_id"]
    snapshot = request.app[STATE].snapshots.get(campaign_id)
    if snapshot is None:
        raise ApiError(404, "unknown_campaign", f"no metrics for campaign {campaign_id!r}")
    return snapshot


async def _store(request: web.Request, call: Callable[[ClickHouseStore], Any]) -> Any:
    store = request.app[STORE]
    slots = request.app[STORE_SLOTS]
    try:
        async with asyncio.timeout(STORE_WAIT_SECONDS):
            await slots.acquire()
    except TimeoutError:
        raise _unavailable("too many ClickHouse reads are waiting; try again") from None
    try:
        if request.transport is None or request.transport.is_closing():
            raise _unavailable("the client went away")  # no read for nobody
        return await asyncio.to_thread(call, store)
    except ValueError as exc:  # the store's own argument checks
        raise ApiError(400, "bad_parameter", str(exc)) from exc
    finally:
        slots.release()


def _page(items: list[Any], limit: int, cursor_of: Callable[[Any], tuple[object, ...]]
          ) -> tuple[list[Any], str | None]:
    """``limit + 1`` rows were asked for: the extra one says there is a next page."""
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, _encode_cursor(*cursor_of(items[-1]))


# --- live routes ------------------------------------------------------------------------


async def campaigns(request: web.Request) -> web.Response:
    _only(request)
    _require_live(request)
    snapshots = request.app[STATE].snapshots
    return _json({"campaigns": [
        {"campaign_id": s.campaign_id, "sent": s.body["sent"],
         "delivery_rate": s.body["delivery_rate"], "as_of": s.body["as_of"]}
        for _, s in sorted(snapshots.items())
    ]})


async def summary(request: web.Request) -> web.Response:
    _only(request)
    return _json(_snapshot(request).body)


def _ab_answer(request: web.Request) -> dict[str, Any]:
    snapshot = _snapshot(request)
    # domain.md 3b: first attempts only; retries move the summary, not the test
    result = ab_statistics(first_attempt_counts(snapshot.body["variants"]),
                           request.app[AB_CONFIG])
    return {"campaign_id": snapshot.campaign_id, "as_of": snapshot.body["as_of"], **result}


async def ab(request: web.Request) -> web.Response:
    _only(request)
    return _json(_ab_answer(request))


async def timeseries(request: web.Request) -> web.Response:
    _only(request, "window", "variant", "from", "to")
    snapshot = _snapshot(request)
    sizes = request.app[SETTINGS].window_sizes_s
    raw = request.query.get("window", str(sizes[0]))
    if not raw.isdigit() or int(raw) not in sizes:
        raise ApiError(400, "bad_parameter",
                       f"window must be one of {', '.join(map(str, sizes))} (seconds)")
    size = int(raw)
    variant = request.query.get("variant")
    if variant is not None and variant not in snapshot.body["variants"]:
        raise ApiError(400, "bad_parameter", f"campaign has no variant {variant!r}")
    bounds = []
    for name in ("from", "to"):
        text = request.query.get(name)
        try:
            bounds.append(None if text is None else parse_instant(text))
        except ValueError as exc:
            raise ApiError(400, "bad_parameter", f"{name}: {exc}") from exc
    since, until = bounds
    windows = request.app[STATE].windows_of(snapshot.campaign_id)  # within retention
    points = []
    for (window_size, start), record in sorted(windows.items()):
        if window_size != size or (since is not None and start < since) or (
                until is not None and start >= until):
            continue
        counts = record["counts"] if variant is None else record["variants"].get(variant, {})
        points.append({"start": iso(start), **{m: int(counts.get(m, 0)) for m in WINDOW_METRICS}})
    return _json({"campaign_id": snapshot.campaign_id, "window": size, "variant": variant,
                  "as_of": snapshot.body["as_of"], "points": points})


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the current summary, then one per new snapshot."""
    _only(request)
    snapshot = _snapshot(request)
    state = request.app[STATE]
    subscription = state.subscribe(snapshot.campaign_id)
    last = request.headers.get("Last-Event-ID", "")
    if not (last.isdigit() and int(last) >= snapshot.offset):
        subscription.offer(snapshot)  # new, or behind: the current state is what it missed
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    streams = request.app[STREAMS]
    streams.add(subscription)
    try:
        await response.prepare(request)
        await _send(response, b"retry: 2000\n\n")
        while not subscription.closed:
            try:
                # asyncio.timeout, not wait_for: no task per wake-up (fan-out cost)
                async with asyncio.timeout(HEARTBEAT_SECONDS):
                    await subscription.ready.wait()
            except TimeoutError:
                await _send(response, b": keep-alive\n\n")
                continue
            pending = subscription.take()
            if pending is not None and not subscription.closed:
                await _send(response, pending.event)
    except (ConnectionResetError, _SlowClientError):
        pass  # the client went away, or could not keep up
    finally:
        streams.discard(subscription)
        state.unsubscribe(snapshot.campaign_id, subscription)
    return response


class _SlowClientError(Exception):
    pass


async def _send(response: web.StreamResponse, data: bytes) -> None:
    try:
        async with asyncio.timeout(SLOW_CLIENT_SECONDS):
            await response.write(data)
    except TimeoutError:
        log.info("closing a server-sent event stream whose client is not reading")
        raise _SlowClientError from None


# --- ClickHouse routes ------------------------------------------------------------------


def _message(row: MessageLogRow) -> dict[str, Any]:
    return {
        "message_id": row.message_id, "contact_id": row.contact_id,
        "contact_name": row.contact_name, "phone": row.phone, "variant": row.variant,
        "status": row.status, "sent_at": iso(row.sent_at),
        "delivered_at": iso(row.delivered_at), "failed_at": iso(row.failed_at),
        "error_code": row.error_code, "error_description": row.error_description,
        "carrier": row.carrier, "segments": row.segments, "clicks": row.click_count,
        "first_click_at": iso(row.first_click_at), "last_click_at": iso(row.last_click_at),
        "replies": row.reply_count, "last_reply_at": iso(row.last_reply_at),
        "updated_at": iso(row.updated_at), "retry_of": row.retry_of,
        "human_clicks": row.human_click_count, "country": row.country,
        "failure_category": row.failure_category,
    }


async def _as_of(request: web.Request, campaign_id: str) -> str | None:
    cache = request.app[AS_OF]
    asked = as_of_clock()
    hit = cache.get(campaign_id)
    if hit is not None and asked - hit[0] < AS_OF_SECONDS:
        return hit[1]
    value = iso(await _store(request, lambda s: s.as_of(campaign_id)))
    if len(cache) >= AS_OF_CAMPAIGNS:
        cache.clear()
    cache[campaign_id] = (asked, value)  # aged from before the query: never too young
    return value


async def messages(request: web.Request) -> web.Response:
    _only(request, "status", "country", "failure_category", "limit", "cursor")
    campaign_id = _snapshot(request).campaign_id
    status = request.query.get("status")
    if status is not None and status not in MESSAGE_STATUSES:
        raise ApiError(400, "bad_parameter",
                       f"status must be one of {', '.join(MESSAGE_STATUSES)}")
    # the store refuses a bad country or category (ValueError: 400 from _store)
    filters = {name: request.query[name] for name in ("country", "failure_category")
               if name in request.query}
    limit = _limit(request)
    cursor = _cursor(request, str)
    after = cursor[0] if cursor else None

    async def read(n: int) -> list[MessageLogRow]:
        return await _store(request, lambda s: s.message_log(
            campaign_id, status, n, after, **filters))

    async def stamp() -> str | None:  # before the rows: an as_of never overstates them
        return await _as_of(request, campaign_id)

    rows, cached, as_of = await request.app[LOG_READS].page(
        (campaign_id, status, *sorted(filters.items())), after, limit, read, stamp)
    rows, next_cursor = _page(rows, limit, lambda r: (r.message_id,))
    return _json({"campaign_id": campaign_id, "as_of": as_of,
                  "items": [_message(r) for r in rows], "next_cursor": next_cursor},
                 headers={"X-Cache": "HIT" if cached else "MISS"})


def _conversation(request: web.Request, contact_id: str) -> dict[str, str]:
    """``{"conversation_url": ...}`` with CA_CONVERSATION_URL_TEMPLATE set, else ``{}``."""
    template = request.app[SETTINGS].conversation_url_template
    if not template:
        return {}
    return {"conversation_url": template.format(
        contact_id=urllib.parse.quote(contact_id, safe=""))}


async def replies(request: web.Request) -> web.Response:
    _only(request, "limit", "cursor")
    campaign_id = _snapshot(request).campaign_id
    limit = _limit(request)
    cursor = _cursor(request, int, str)
    before = (cursor[0], cursor[1]) if cursor else None
    as_of = await _as_of(request, campaign_id)
    rows = await _store(request, lambda s: s.replies_page(campaign_id, limit + 1, before))
    rows, next_cursor = _page(rows, limit, lambda r: (r.replied_at, r.event_id))
    return _json({"campaign_id": campaign_id, "as_of": as_of, "next_cursor": next_cursor,
                  "items": [{"event_id": r.event_id, "message_id": r.message_id,
                             "contact_id": r.contact_id, "contact_name": r.contact_name,
                             "phone": r.phone, "variant": r.variant, "body": r.body,
                             "received_at": iso(r.replied_at),
                             **_conversation(request, r.contact_id)} for r in rows]})


async def clicks(request: web.Request) -> web.Response:
    _only(request, "contact_id", "limit", "cursor")
    campaign_id = _snapshot(request).campaign_id
    limit = _limit(request)
    contact_id = request.query.get("contact_id")
    as_of = await _as_of(request, campaign_id)
    if contact_id is None:
        cursor = _cursor(request, str)
        after_contact = cursor[0] if cursor else None
        rows = await _store(request,
                            lambda s: s.contact_clicks(campaign_id, limit + 1, after_contact))
        rows, next_cursor = _page(rows, limit, lambda r: (r.contact_id,))
        items = [{"contact_id": r.contact_id, "contact_name": r.contact_name, "phone": r.phone,
                  "clicks": r.clicks, "first_click_at": iso(r.first_click_at),
                  "last_click_at": iso(r.last_click_at),
                  **_conversation(request, r.contact_id)} for r in rows]
        return _json({"campaign_id": campaign_id, "as_of": as_of, "items": items,
                      "next_cursor": next_cursor})
    cursor = _cursor(request, int, str)
    after = (cursor[0], cursor[1]) if cursor else None
    events_ = await _store(request, lambda s: s.contact_click_events(
        campaign_id, contact_id, limit + 1, after))
    events_, next_cursor = _page(events_, limit, lambda r: (r.clicked_at, r.event_id))
    items = [{"event_id": e.event_id, "message_id": e.message_id, "link_id": e.link_id,
              "clicked_at": iso(e.clicked_at), "user_agent": e.user_agent} for e in events_]
    return _json({"campaign_id": campaign_id, "contact_id": contact_id, "as_of": as_of,
                  **_conversation(request, contact_id), "items": items,
                  "next_cursor": next_cursor})


def _csv_chunks(rows: Iterator[tuple[object, ...]], prices: PriceTable | None
                ) -> Generator[bytes, None, None]:
    """The CSV export (``sinks.export.write_csv``) in chunks of rows; the header only
    in the first."""
    first = True
    while True:
        batch = list(itertools.islice(rows, EXPORT_CHUNK_ROWS))
        if not batch and not first:
            return
        out = io.StringIO(newline="")
        write_csv(batch, out, prices)
        text = out.getvalue()
        yield (text if first else text.split("\r\n", 1)[1]).encode()
        first = False


async def export(request: web.Request) -> web.StreamResponse:
    _only(request)
    campaign_id = _snapshot(request).campaign_id
    store = request.app[STORE]
    rows = store.iter_export_rows(campaign_id)
    chunks = _csv_chunks(rows, request.app[PRICES])
    try:
        # the first chunk before the headers: a store that cannot answer gets a 503
        first = await asyncio.to_thread(next, chunks)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in campaign_id)
        response = web.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{safe}.csv"'})
        await response.prepare(request)
        await response.write(first)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        chunks.close()
        with contextlib.suppress(Exception):
            rows.close()


# --- commands -------------------------------------------------------------------------

_RETRY_FIELDS = {"dry_run": bool, "reason": str, "request_id": str}
MAX_REQUEST_ID = 256


async def _command_body(request: web.Request, fields: dict[str, type]) -> dict[str, Any]:
    """The JSON object of a command. Only ``application/json``: a cross-site HTML form
    cannot send it (415), and a browser asks first (CORS preflight), which fails."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send a JSON object with "
                       "Content-Type: application/json")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_body", f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_body", "the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise ApiError(400, "bad_body", f"unknown field(s): {', '.join(unknown)}")
    for name, kind in fields.items():
        if name in body and type(body[name]) is not kind:
            raise ApiError(400, "bad_body", f"{name} must be a {kind.__name__}")
    return body


async def retries(request: web.Request) -> web.Response:
    """POST: request a retry of the campaign's failed messages (streams/api/retries.py)."""
    _only(request)
    body = await _command_body(request, _RETRY_FIELDS)
    campaign_id = _snapshot(request).campaign_id
    request_id = body.get("request_id")
    if request_id is not None and not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise ApiError(400, "bad_body", f"request_id must be 1..{MAX_REQUEST_ID} characters")

    async def inputs() -> Any:
        return await _store(request, lambda s: read_retry_inputs(s, campaign_id))

    try:
        answer = await request_retries(
            request.app[SETTINGS], campaign_id, inputs, dry_run=body.get("dry_run", False),
            reason=body.get("reason", ""), requested_by="api", request_id=request_id)
    except RetryConflictError as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    except SinkError:
        raise  # the middleware's 503 with the store's Retry-After
    except (KafkaError, OSError, TimeoutError, CampaignAnalyticsError) as exc:
        log.warning("a retry request of %s could not use Kafka: %s", campaign_id, exc)
        raise _unavailable(f"Kafka cannot answer now: {exc}") from None
    return _json(answer.body())


_WINNER_FIELDS = {"variant": str, "reason": str, "force": bool}


def _kafka_unavailable(what: str, campaign_id: str, exc: Exception) -> ApiError:
    log.warning("%s of %s could not use Kafka: %s", what, campaign_id, exc)
    return _unavailable(f"Kafka cannot answer now: {exc}")


async def winner(request: web.Request) -> web.Response:
    """POST: record the decision to send a variant (streams/api/winner.py)."""
    _only(request)
    body = await _command_body(request, _WINNER_FIELDS)
    campaign_id = _snapshot(request).campaign_id
    if "variant" not in body:
        raise ApiError(400, "bad_body", "variant is required")

    def statistics() -> tuple[dict[str, Any], str]:
        answer = _ab_answer(request)  # now, after the topic was read
        return answer, answer["as_of"]

    try:
        record = await decide_winner(
            request.app[SETTINGS], campaign_id, statistics, variant=body["variant"],
            reason=body.get("reason", ""), force=body.get("force", False),
            requested_by="api")
    except WinnerRequestError as exc:
        raise ApiError(400, "bad_body", str(exc)) from None
    except WinnerRefusedError as exc:
        raise ApiError(409, "no_winner", str(exc), more={"verdict": exc.verdict}) from None
    except WinnerDecidedError as exc:
        raise ApiError(409, "decided", str(exc),
                       more={"decision": decision_body(exc.decision)}) from None
    except (KafkaError, OSError, TimeoutError, CampaignAnalyticsError) as exc:
        raise _kafka_unavailable("a winner decision", campaign_id, exc) from None
    return _json(decision_body(record))


async def decision(request: web.Request) -> web.Response:
    """GET: the campaign's winner decision; 404 until there is one."""
    _only(request)
    campaign_id = _snapshot(request).campaign_id
    try:
        record = await read_decision(request.app[SETTINGS], campaign_id)
    except (KafkaError, OSError, TimeoutError, CampaignAnalyticsError) as exc:
        raise _kafka_unavailable("reading the winner decision", campaign_id, exc) from None
    if record is None:
        raise ApiError(404, "no_decision", f"campaign {campaign_id!r} has no winner decision")
    return _json(decision_body(record))


# --- service routes ---------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    _require_live(request)
    try:
        await asyncio.to_thread(request.app[STORE].as_of)
    except SinkError as exc:
        raise _unavailable(f"ClickHouse does not answer: {exc}", exc.retry_after) from exc
    return _json({"status": "ready", "campaigns": len(request.app[STATE].snapshots)})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def _close_streams(app: web.Application) -> None:
    """On shutdown: every live stream ends at its next wake-up (now)."""
    streams: set[Subscription] = app[STREAMS]
    for subscription in list(streams):
        subscription.close()


def ab_config(settings: Settings) -> AbConfig:
    """The A/B settings; ``ConfigurationError`` for values the statistics refuse."""
    try:
        return AbConfig(alpha=settings.ab_alpha, level=settings.ab_level,
                        primary=settings.ab_metric, control=settings.ab_control or None,
                        split=settings.ab_split or None, clicks=settings.ab_clicks)
    except ValueError as exc:
        raise ConfigurationError(f"A/B settings (CA_AB_*): {exc}") from exc


def create_api(settings: Settings, state: LiveState, store: ClickHouseStore,
               follower: MetricsFollower | None) -> web.Application:
    """The aiohttp application; the caller runs ``follower`` (None: ``state`` is fed
    by the caller and always ready)."""
    middlewares = [_errors]
    if settings.api_token:
        middlewares.insert(0, _auth(settings.api_token))
    app = web.Application(middlewares=middlewares)
    app[STATE], app[STORE], app[FOLLOWER], app[SETTINGS] = state, store, follower, settings
    app[AB_CONFIG] = ab_config(settings)
    app[PRICES] = load_prices(settings.prices_file)  # a bad file: ConfigurationError
    app[OPENAPI] = orjson.dumps(openapi_document(settings))
    streams: set[Subscription] = set()
    app[STREAMS] = streams
    app[AS_OF] = {}
    app[LOG_READS] = LogReads(settings.page_cache_seconds, settings.page_read_rows)
    app[STORE_SLOTS] = asyncio.Semaphore(STORE_CALLS)
    app.on_shutdown.append(_close_streams)
    base = "/api/v1/campaigns"
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get(base, campaigns)
    app.router.add_get(base + "/{campaign_id}", summary)
    app.router.add_get(base + "/{campaign_id}/ab", ab)
    app.router.add_get(base + "/{campaign_id}/timeseries", timeseries)
    app.router.add_get(base + "/{campaign_id}/messages", messages)
    app.router.add_get(base + "/{campaign_id}/replies", replies)
    app.router.add_get(base + "/{campaign_id}/clicks", clicks)
    app.router.add_get(base + "/{campaign_id}/export.csv", export)
    app.router.add_get(base + "/{campaign_id}/events", events)
    app.router.add_post(base + "/{campaign_id}/retries", retries)
    app.router.add_post(base + "/{campaign_id}/winner", winner)
    app.router.add_get(base + "/{campaign_id}/winner", decision)
    add_pages(app)
    return app

