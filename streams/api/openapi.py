"""The API's OpenAPI 3.1 document (``GET /api/v1/openapi.json``).

Written by hand beside the routes (``streams/api/app.py``) rather than generated:
schemathesis runs every operation against the live service in the tests, so a
route and its description cannot drift apart unnoticed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from projections.ab import AB_RESULT_SCHEMA
from projections.failures import FailureCategory
from projections.message_log import MESSAGE_STATUSES
from projections.metrics import FIRST_ATTEMPT_METRICS, WINDOW_METRICS
from streams.settings import Settings

_COUNT = {"type": "integer", "minimum": 0}
_RATE = {"type": "number", "minimum": 0, "maximum": 1}
_TIME = {"type": "string", "format": "date-time"}
_MAYBE_TIME = {"type": ["string", "null"], "format": "date-time"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_TEXT = {"type": "string"}
_COUNTS_BY_NAME = {"type": "object", "additionalProperties": _COUNT}
_AS_OF_STORE = {**_MAYBE_TIME, "description": "newest message update the ClickHouse sinks "
                "have written for this campaign (null: none yet); a log that trails the "
                "metrics shows an older as_of"}
_NEXT = {"type": ["string", "null"], "description": "opaque; pass as cursor for the next "
         "page; null on the last page"}
_CONVERSATION = {"type": "string", "format": "uri", "description": "the contact's "
                 "conversation in the messaging platform (CA_CONVERSATION_URL_TEMPLATE); "
                 "absent when that is not set"}
_MAYBE_NUMBER = {"type": ["number", "null"]}

_METRICS = ("sent", "delivered", "failed", "pending", "replies", "unique_repliers", "opt_outs",
            "link_clicks", "unique_link_clicks", "retries", "recovered_by_retry",
            "human_link_clicks", "unique_human_link_clicks", "unknown")
# The counts over first attempts only (messages without retry_of): the A/B input.
_FIRST_ATTEMPTS = {"anyOf": [
    {"type": "object", "properties": dict.fromkeys(FIRST_ATTEMPT_METRICS, _COUNT),
     "required": list(FIRST_ATTEMPT_METRICS)},
    {"type": "null"}], "description": "the counts of first attempts only (no retry_of), "
    "what the A/B statistics read; null in a snapshot published before retries were counted"}
_RATES = ("delivery_rate", "reply_rate", "link_click_rate", "human_link_click_rate")
_BREAKDOWNS = ("by_error_code", "by_carrier", "time_to_deliver", "time_to_first_click",
               "by_failure_category")
_CATEGORIES = [c.value for c in FailureCategory]
# domain.md 3b: sent, delivered and failed per country / carrier (a REJECTED message
# counts in failed only).
_OUTCOMES = {"type": "object", "additionalProperties": {
    "type": "object", "properties": dict.fromkeys(("sent", "delivered", "failed"), _COUNT),
    "required": ["sent", "delivered", "failed"]}}
_MONEY = {"type": ["number", "null"], "minimum": 0}
_WHERE_AND_COST = {
    "by_country": {**_OUTCOMES, "description": "per ISO 3166 alpha-2 region of the phone "
                   "number; ZZ: a number that cannot be placed"},
    "by_carrier_outcome": {**_OUTCOMES, "description": "per carrier named by the receipts"},
    "currency": {**_MAYBE_TEXT, "description": "CA_PRICES_FILE's currency; null without "
                 "prices, and then every cost figure is null"},
    "cost": {**_MONEY, "description": "segments of accepted messages x their country's price"},
    "cost_per_delivered": {**_MONEY, "description": "null when nothing was delivered"},
    "cost_per_unique_human_click": {**_MONEY, "description": "null without a human click"},
}


def _object(properties: dict[str, Any], required: list[str] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, **extra}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _metrics() -> dict[str, Any]:
    return {**{m: _COUNT for m in _METRICS}, **{r: _RATE for r in _RATES},
            "first_attempts": _FIRST_ATTEMPTS, **_WHERE_AND_COST}


def _schemas() -> dict[str, Any]:
    variant = _object({**_metrics(), **{b: _COUNTS_BY_NAME for b in _BREAKDOWNS}},
                      required=[*_METRICS, *_RATES])
    summary = _object({
        "campaign_id": _TEXT, **_metrics(), **{b: _COUNTS_BY_NAME for b in _BREAKDOWNS},
        "variants": {"type": "object", "additionalProperties": _ref("VariantMetrics")},
        "as_of": {**_TIME, "description": "when the worker published this snapshot"},
    })
    ab, defs = _hoisted(AB_RESULT_SCHEMA)
    ab["properties"] = {"campaign_id": _TEXT, "as_of": _TIME, **ab.get("properties", {})}
    ab["required"] = ["campaign_id", "as_of", *ab.get("required", [])]
    message = _object({
        "message_id": _TEXT, "contact_id": _TEXT, "contact_name": _MAYBE_TEXT, "phone": _TEXT,
        "variant": _MAYBE_TEXT, "status": {"type": "string", "enum": list(MESSAGE_STATUSES)},
        "sent_at": _TIME, "delivered_at": _MAYBE_TIME, "failed_at": _MAYBE_TIME,
        "error_code": _MAYBE_TEXT, "error_description": _MAYBE_TEXT, "carrier": _MAYBE_TEXT,
        "segments": _COUNT, "clicks": _COUNT, "first_click_at": _MAYBE_TIME,
        "last_click_at": _MAYBE_TIME, "replies": _COUNT, "last_reply_at": _MAYBE_TIME,
        "updated_at": _TIME,
        "retry_of": {**_MAYBE_TEXT, "description": "the message this one retries "
                     "(its attempts are the rows whose retry_of it is); null: a first attempt"},
        "human_clicks": {**_COUNT, "description": "of clicks, those judged human "
                         "(domain.md 3b)"},
        "country": {"type": "string", "pattern": "^[A-Z]{2}$", "description":
                    "ISO 3166 alpha-2 region of the phone number; ZZ: placed nowhere"},
        "failure_category": {"type": ["string", "null"], "enum": [*_CATEGORIES, None],
                             "description": "the category of a failed message's cause"},
    })
    reply_fields = {
        "event_id": _TEXT, "message_id": _TEXT, "contact_id": _TEXT, "contact_name": _MAYBE_TEXT,
        "phone": _TEXT, "variant": _MAYBE_TEXT, "body": _TEXT, "received_at": _TIME,
    }
    reply = _object({**reply_fields, "conversation_url": _CONVERSATION},
                    required=list(reply_fields))
    clicks_fields = {
        "contact_id": _TEXT, "contact_name": _MAYBE_TEXT, "phone": _TEXT, "clicks": _COUNT,
        "first_click_at": _TIME, "last_click_at": _TIME,
    }
    contact_clicks = _object({**clicks_fields, "conversation_url": _CONVERSATION},
                             required=list(clicks_fields))
    click = _object({"event_id": _TEXT, "message_id": _TEXT, "link_id": _TEXT,
                     "clicked_at": _TIME, "user_agent": _MAYBE_TEXT})

    def page(item: str, **more: Any) -> dict[str, Any]:
        return _object({"campaign_id": _TEXT, **more, "as_of": _AS_OF_STORE,
                        "items": {"type": "array", "items": _ref(item)}, "next_cursor": _NEXT})

    click_page = page("Click", contact_id=_TEXT)
    click_page["properties"]["conversation_url"] = _CONVERSATION

    return {
        **defs,
        "Error": _object({"error": _TEXT, "detail": _TEXT}),
        "VariantMetrics": variant,
        "Summary": summary,
        "AbStatistics": ab,
        "CampaignList": _object({"campaigns": {"type": "array", "items": _object({
            "campaign_id": _TEXT, "sent": _COUNT, "delivery_rate": _RATE, "as_of": _TIME})}}),
        "TimeSeries": _object({
            "campaign_id": _TEXT, "window": {"type": "integer"}, "variant": _MAYBE_TEXT,
            "as_of": _TIME,
            "points": {"type": "array", "items": _object(
                {"start": _TIME, **{m: _COUNT for m in WINDOW_METRICS}})},
        }),
        "Message": message,
        "MessagePage": page("Message"),
        "Reply": reply,
        "ReplyPage": page("Reply"),
        "ContactClicks": contact_clicks,
        "ContactClicksPage": page("ContactClicks"),
        "Click": click,
        "ClickPage": click_page,
        "RetryRequest": _object({
            "dry_run": {"type": "boolean", "default": False,
                        "description": "compute the same answer, request nothing"},
            "reason": {"type": "string", "default": "", "description": "kept in the records"},
            "request_id": {"type": "string", "minLength": 1, "maxLength": 256,
                           "description": "idempotency key: a second request with it "
                           "requests nothing new and repeats the first answer's counts"},
        }, required=[], additionalProperties=False),
        "RetryAnswer": _object({
            "campaign_id": _TEXT, "request_id": _TEXT, "dry_run": {"type": "boolean"},
            "repeated": {"type": "boolean", "description": "the request id was answered "
                         "before: nothing new was requested (skipped is then empty)"},
            "round_id": {**_MAYBE_TEXT, "description": "null: nothing was written"},
            "requested": {**_COUNT, "description": "messages requested, whatever their "
                          "not_before"},
            "scheduled_later": {**_COUNT, "description": "of those, held by quiet hours"},
            "placed_by_default_zone": {**_COUNT, "description": "of those, in "
                                       "CA_DEFAULT_TIME_ZONE (no single zone for the number)"},
            "skipped": {**_COUNTS_BY_NAME, "description": "failed messages not requested, "
                        "per reason"},
        }),
        "WinnerRequest": _object({
            "variant": {"type": "string", "description": "the variant to send"},
            "reason": {"type": "string", "default": "", "maxLength": 2000,
                       "description": "kept in the record; required with force"},
            "force": {"type": "boolean", "default": False, "description": "decide although "
                      "the verdict does not name this variant (no_winner_yet, or another "
                      "leader); recorded as forced"},
        }, required=["variant"], additionalProperties=False),
        "WinnerDecision": _winner_decision(),
        "WinnerConflict": _object({
            "error": {"type": "string", "enum": ["no_winner", "decided", "conflict"]},
            "detail": _TEXT,
            "verdict": {"type": "object", "description": "with no_winner: the A/B verdict "
                        "that does not support the variant"},
            "decision": {**_ref("WinnerDecision"), "description": "with decided: the "
                         "campaign's decision, made before"},
        }, required=["error", "detail"]),
        "Health": _object({"status": _TEXT}),
        "Ready": _object({"status": _TEXT, "campaigns": _COUNT}),
    }


def _winner_decision() -> dict[str, Any]:
    """The WinnerDecided record as JSON (schemas/winner_decision.v1.avsc): the
    statistics_json text is given as ``statistics``, the A/B answer it was."""
    variant = _object({
        "variant": _TEXT, **{k: _COUNT for k in (
            "sent", "delivered", "failed", "pending", "unknown", "rejected", "unique_repliers",
            "unique_link_clicks", "opt_outs", "successes", "trials")},
        **{k: _MAYBE_NUMBER for k in (
            "rate", "interval_low", "interval_high", "p_value", "always_valid_p_value",
            "always_valid_interval_low", "always_valid_interval_high")}})
    return _object({
        "decision_id": _TEXT, "campaign_id": _TEXT, "variant": _TEXT,
        "forced": {"type": "boolean"}, "reason": _TEXT,
        "requested_by": {"type": "string", "description": "api, or cli:<user>"},
        "decided_at": _TIME, "statistics_as_of": _TIME,
        "verdict_status": {"type": "string", "enum": ["winner", "no_winner_yet"]},
        "verdict_variant": _MAYBE_TEXT, "verdict_metric": _TEXT,
        "verdict_p_value": _MAYBE_NUMBER,
        "verdict_reasons": {"type": "array", "items": _TEXT},
        "always_valid": {"type": "boolean"}, "alpha": {"type": "number"},
        "level": {"type": "number"}, "control": _MAYBE_TEXT,
        "variants": {"type": "array", "items": variant},
        "statistics": {**_ref("AbStatistics"), "description": "GET .../ab as it stood"},
    })


def _hoisted(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JSON Schema's ``$defs`` moved to ``components/schemas`` (a ``#/$defs/...``
    reference inside an OpenAPI document would point at the document's root)."""
    text = json.dumps(copy.deepcopy(schema)).replace('"#/$defs/', '"#/components/schemas/')
    moved = json.loads(text)
    defs = moved.pop("$defs", {})
    moved.pop("$schema", None)
    return moved, defs


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {400: "bad parameters", 401: "missing or wrong bearer token (CA_API_TOKEN set)",
             404: "unknown campaign", 409: "another retry round of the campaign was written "
             "first, or is being written", 415: "the body is not application/json",
             503: "a backend cannot answer now; see Retry-After"}
    out: dict[str, Any] = {}
    for status in statuses:
        out[str(status)] = _json_response(texts[status], "Error")
        if status == 503:
            out[str(status)]["headers"] = {
                "Retry-After": {"schema": {"type": "string"}, "required": True,
                                "description": "seconds"}}
    return out


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


# OpenAPI 3.1 has no item schema for event streams (3.2's itemSchema): a stream's
# schema describes each of its events, as tools (schemathesis) read it.
_SSE_EVENT = _object({
    "event": {"type": "string", "enum": ["summary"]},
    "id": {"type": "string", "pattern": "^[0-9]+$",
           "description": "the snapshot's offset; send it back as Last-Event-ID"},
    "data": {"type": "string", "contentMediaType": "application/json",
             "contentSchema": _ref("Summary")},
    "retry": {"type": "integer"},
}, required=["event", "id", "data"])

_CAMPAIGN = {"name": "campaign_id", "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1}}
_LIMIT = _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 500,
                                       "default": 100})
_CURSOR = _query("cursor", "next_cursor of the previous page", {"type": "string"})


def _operation(summary: str, schema: str | None, *, params: list[dict[str, Any]] | None = None,
               store: bool = False, content: dict[str, Any] | None = None) -> dict[str, Any]:
    ok = (_json_response(summary, schema) if schema is not None
          else {"description": summary, "content": content})
    parameters = [_CAMPAIGN, *(params or [])]
    statuses = (400, 401, 404, 503)
    return {"get": {"summary": summary, "parameters": parameters,
                    "responses": {"200": ok, **_errors(*statuses)},
                    **({"description": "Answered from ClickHouse; as_of says how current."}
                       if store else {})}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    windows = list(settings.window_sizes_s)
    base = "/api/v1/campaigns/{campaign_id}"
    paths: dict[str, Any] = {
        "/api/v1/campaigns": {"get": {
            "summary": "every campaign with metrics: id, sent, delivery rate, last snapshot",
            "responses": {"200": _json_response("campaigns", "CampaignList"),
                          **_errors(401, 503)}}},
        base: _operation("the campaign's summary (summary --json keys) and as_of", "Summary"),
        base + "/ab": _operation("A/B statistics per variant, against the control", "AbStatistics"),
        base + "/timeseries": _operation("counts per event-time window", "TimeSeries", params=[
            _query("window", "window size in seconds", {"type": "integer", "enum": windows}),
            _query("variant", "one variant's counts", {"type": "string"}),
            _query("from", "first window start (ISO-8601 or epoch ms)", {"type": "string"}),
            _query("to", "windows starting before this (ISO-8601 or epoch ms)",
                   {"type": "string"})]),
        base + "/messages": _operation("the message log, by message_id", "MessagePage", params=[
            _query("status", "only messages with this status (unknown: no terminal "
                   "receipt CA_RECEIPT_TIMEOUT after the send)",
                   {"type": "string", "enum": list(MESSAGE_STATUSES)}),
            _query("country", "only messages to this ISO 3166 alpha-2 region (ZZ: numbers "
                   "placed nowhere)", {"type": "string", "pattern": "^[A-Z]{2}$"}),
            _query("failure_category", "only failed messages of this category",
                   {"type": "string", "enum": _CATEGORIES}),
            _LIMIT, _CURSOR], store=True),
        base + "/replies": _operation("replies, newest first", "ReplyPage",
                                      params=[_LIMIT, _CURSOR], store=True),
        base + "/clicks": _operation(
            "link clicks per contact; with contact_id, each click of that contact",
            "ContactClicksPage", params=[
                _query("contact_id", "one contact's clicks (a ClickPage)", {"type": "string"}),
                _LIMIT, _CURSOR], store=True),
        base + "/export.csv": _operation(
            "the message log as CSV (contact name, phone, variant, status, sent at, "
            "delivered at, error code, error description, then human_click_count, country, "
            "failure_category, cost: empty without CA_PRICES_FILE), streamed", None,
            content={"text/csv": {"schema": {"type": "string"}}}, store=True),
        base + "/events": _operation(
            "server-sent events: `summary` events (data: the Summary JSON, id: increasing); "
            "reconnect with Last-Event-ID to get what was missed; a comment at least every "
            "15 s", None, params=[{"name": "Last-Event-ID", "in": "header", "required": False,
                                   "schema": {"type": "string"}}],
            content={"text/event-stream": {"schema": _SSE_EVENT}}),
        base + "/retries": {"post": {
            "summary": "request a retry of the failed messages that may succeed (domain.md "
            "3b), each outside quiet hours in its contact's zone, as one round of records "
            "on campaign-analytics.retry-requests (docs/consumers.md)",
            "parameters": [_CAMPAIGN],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("RetryRequest")}}},
            "responses": {"200": _json_response("the counts", "RetryAnswer"),
                          **_errors(400, 401, 404, 409, 415, 503)}}},
        base + "/winner": {
            "post": {
                "summary": "record the decision to send a variant to the rest of the audience, "
                "with the A/B statistics as they stood, on campaign-analytics.winner-decisions "
                "(one per campaign: docs/consumers.md); refused (409, with the verdict) when "
                "the verdict does not name the variant, unless forced with a reason",
                "parameters": [_CAMPAIGN],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("WinnerRequest")}}},
                "responses": {
                    "200": _json_response("the decision recorded", "WinnerDecision"),
                    **_errors(400, 401, 404, 415, 503),
                    "409": _json_response("refused (no_winner: the verdict), or the campaign "
                                          "has a decision (decided: that one)",
                                          "WinnerConflict")}},
            "get": {
                "summary": "the campaign's winner decision",
                "parameters": [_CAMPAIGN],
                "responses": {"200": _json_response("the decision", "WinnerDecision"),
                              **_errors(400, 401, 503),
                              "404": _json_response("unknown campaign, or no decision yet",
                                                    "Error")}}},
        "/api/v1/openapi.json": {"get": {
            "summary": "this document",
            "responses": {"200": {"description": "OpenAPI 3.1",
                                  "content": {"application/json": {
                                      "schema": {"type": "object"}}}},
                          **_errors(401)}}},
        "/healthz": {"get": {"summary": "the process is alive", "security": [],
                             "responses": {"200": _json_response("alive", "Health")}}},
        "/readyz": {"get": {
            "summary": "metric topics read to their end at start, and ClickHouse answers",
            "security": [],
            "responses": {"200": _json_response("ready", "Ready"), **_errors(503)}}},
    }
    # The clicks route answers a ClickPage when contact_id is given.
    paths[base + "/clicks"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"] = {"anyOf": [_ref("ContactClicksPage"), _ref("ClickPage")]}
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "campaign-analytics", "version": "1",
                 "description": "Campaign metrics, A/B statistics, message logs, replies, "
                 "link clicks and live updates. Timestamps are ISO-8601 UTC; rates are "
                 "fractions 0..1; errors are {error, detail}."},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if settings.api_token:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http",
                                                                "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
