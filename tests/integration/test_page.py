"""The campaign page in a real browser: Debian's chromium (``/usr/bin/chromium``,
installed by ``deploy/ensure-chromium.sh``) driven by Playwright for Python against a
live system: a broker, a worker (whose sink process owns the embedded ClickHouse) and
``campaign-analytics api`` as its own process, on the messy campaign of
``test_pipeline``.

Every figure the page shows carries its raw API value in ``data-value``; the checks
compare those with the API's answers and with the batch recount (``tests.oracle``).
Waiting is bounded DOM polling (``expect``, and ``wait_equal``'s polling of
``page.evaluate``), never a fixed sleep. Every browser context records console
errors, uncaught page errors, failed requests, error responses and requests leaving
the API's origin; a test that leaves any (outside the windows it expects them: a 401
before the token is given, the API's restart) fails at teardown.

Screenshots go to ``CA_SCREENSHOT_DIR`` (``make screenshots``: docs/screenshots),
else to a pytest temporary directory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import csv
import functools
import io
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    WebError,
    expect,
    sync_playwright,
)

from projections.ab import AbConfig, ab_statistics, first_attempt_counts
from projections.message_log import MESSAGE_STATUSES
from streams.cli.demo import generate_campaign
from streams.codecs.commands import decode_retry_request
from tests.integration.conftest import Deployment, free_port, read_topic
from tests.integration.test_api import TOKEN, Api, _pick, _statuses
from tests.integration.test_pipeline import _messy_events, _write
from tests.oracle import expected_log, recount

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"  # Debian's package; deploy/ensure-chromium.sh installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
CAMPAIGN = "camp-ab"
CONVERSATIONS = "https://app.example/conversations/{contact_id}"
TOKEN_KEY = "ca-api-token"  # noqa: S105 - the sessionStorage key, not a secret
PAGE_SIZE = 25
WAIT_MS = 15_000  # a page showing what the API already answers
LIVE_MS = 60_000  # new events through the worker, the metric topics and the stream

CARD_KEYS = ("sent", "delivered", "delivery_rate", "replies", "reply_rate", "link_clicks",
             "unique_link_clicks", "link_click_rate", "failed", "pending", "opt_outs",
             "unique_repliers")
VARIANT_FIELDS = ("sent", "delivered", "failed", "pending", "replies", "unique_repliers",
                  "opt_outs", "link_clicks", "unique_link_clicks")
AB_METRICS = ("delivery_rate", "unique_reply_rate", "click_rate", "opt_out_rate",
              "failure_rate")
CHARTS = {"chart-time-to-deliver": "time_to_deliver",
          "chart-time-to-first-click": "time_to_first_click",
          "chart-by-error-code": "by_error_code", "chart-by-carrier": "by_carrier"}
MESSAGE_FIELDS = ("contact_name", "phone", "variant", "status", "sent_at", "delivered_at",
                  "error_code", "error_description")
REPLY_FIELDS = ("contact_name", "body", "received_at")
CLICK_FIELDS = ("contact_name", "phone", "clicks", "first_click_at", "last_click_at")
CONTACT_CLICK_FIELDS = ("clicked_at", "message_id", "link_id", "user_agent")


# --- comparing the page with expected values ------------------------------------------
#
# A reader is a JS function returning the page's values as nested objects of attribute
# strings. Expected values are JSON: a number matches a non-empty attribute whose
# float() is exactly that number (the page writes JS String(x), which round-trips),
# null matches "", a string or a boolean matches itself; objects need the same keys,
# lists the same length and order.
#
# The page's Content-Security-Policy has no 'unsafe-eval', so Playwright's
# wait_for_function (which compiles its predicate with `new Function` in the page)
# never runs there; page.evaluate goes through the DevTools protocol, which the policy
# does not govern. wait_equal therefore polls with page.evaluate, bounded.

POLL_MS = 100

# helpers every reader may use
_READ_JS = """
const one = (root, sel, attr) => {
  const found = root.querySelectorAll(sel);
  if (found.length !== 1) return `<${found.length} elements match ${sel}>`;
  return found[0].getAttribute(attr);
};
const disabled = (sel) => {
  const el = document.querySelector(sel);
  return el ? el.disabled : `<no ${sel}>`;
};
const rows = (sel, idAttr, fields) => [...document.querySelectorAll(sel)].map(tr => {
  const row = {id: tr.getAttribute(idAttr)};
  for (const f of fields) row[f] = one(tr, `td[data-field="${f}"]`, "data-value");
  return row;
});
"""


def _reader(body: str, **constants: Any) -> str:
    consts = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in constants.items())
    return f"() => {{\n{consts}{_READ_JS}{body}\n}}"


def mismatches(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where ``actual`` (attribute strings) differs from ``expected``."""
    where = path or "(top)"
    if expected is None:
        return [] if actual == "" else [f"{where}: page has {actual!r}, expected '' (null)"]
    if isinstance(expected, bool | str):
        return [] if actual == expected else [
            f"{where}: page has {actual!r}, expected {expected!r}"]
    if isinstance(expected, int | float):
        try:
            same = isinstance(actual, str) and actual != "" and float(actual) == expected
        except ValueError:
            same = False
        return [] if same else [f"{where}: page has {actual!r}, expected {expected!r}"]
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: page has {actual!r}, expected a list"]
        out = [] if len(actual) == len(expected) else [
            f"{where}: page has {len(actual)} items, expected {len(expected)}"]
        for i, (a, e) in enumerate(zip(actual, expected, strict=False)):
            out += mismatches(a, e, f"{path}[{i}]")
        return out
    if not isinstance(actual, dict):
        return [f"{where}: page has {actual!r}, expected an object"]
    out = []
    for key in sorted(set(actual) | set(expected)):
        sub = f"{path}.{key}" if path else str(key)
        if key not in expected:
            out.append(f"{sub}: on the page ({actual[key]!r}), not expected")
        elif key not in actual:
            out.append(f"{sub}: missing on the page, expected {expected[key]!r}")
        else:
            out += mismatches(actual[key], expected[key], sub)
    return out


def poll(page: Page, done: Callable[[], bool], timeout_ms: float) -> bool:
    """Whether ``done()`` became true within ``timeout_ms``, asking every POLL_MS while
    the page's event loop runs."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not done():
        if time.monotonic() >= deadline:
            return False
        page.wait_for_timeout(POLL_MS)
    return True


def wait_equal(page: Page, reader: str, expected: Any, what: str,
               timeout_ms: float = WAIT_MS) -> None:
    """Polls the page until ``reader`` matches ``expected`` (a value, or a function
    giving the current one: the API's answer is read again at each look); an
    AssertionError naming each difference if it does not within ``timeout_ms``."""
    problems: list[str] = []

    def matches() -> bool:
        want = expected() if callable(expected) else expected
        problems[:] = mismatches(page.evaluate(reader), want)
        return not problems

    if not poll(page, matches, timeout_ms):
        shown = "\n  ".join(problems[:40])
        more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
        raise AssertionError(f"{what}: the page still differs after {timeout_ms / 1000:g} s:"
                             f"\n  {shown}{more}")


# --- what the page must show ----------------------------------------------------------

READ_SUMMARY = _reader("""
const out = {as_of: one(document, "#as-of", "data-value"), cards: {}, variants: {},
             charts: {}, verdict: one(document, "#verdict", "data-status")};
const srm = document.querySelectorAll("#srm-warning");
out.srm_hidden = srm.length === 1 ? srm[0].hasAttribute("hidden") : `<${srm.length} #srm-warning>`;
for (const k of CARDS) out.cards[k] = one(document, `#cards [data-card="${k}"]`, "data-value");
const table = document.querySelector("table#variants");
for (const th of document.querySelectorAll("table#variants thead th[data-variant]")) {
  const name = th.getAttribute("data-variant");
  const at = `td[data-variant="${CSS.escape(name)}"]`;
  const v = {fields: {}, rate: {}, low: {}, high: {}, lift: {}};
  for (const f of FIELDS) v.fields[f] = one(table, `${at}[data-field="${f}"]`, "data-value");
  for (const m of METRICS) {
    for (const [key, attr] of [["rate", "data-value"], ["low", "data-low"], ["high", "data-high"]])
      v[key][m] = one(table, `${at}[data-metric="${m}"]`, attr);
    v.lift[m] = one(table, `${at}[data-lift="${m}"]`, "data-value");
  }
  out.variants[name in out.variants ? `<duplicate column ${name}>` : name] = v;
}
for (const id of CHART_IDS) {
  const bars = {};
  for (const rect of document.querySelectorAll(`svg#${id} rect[data-key]`)) {
    const key = rect.getAttribute("data-key"), value = rect.getAttribute("data-value");
    if (value === "0") continue;  // an empty bucket drawn as a zero bar
    bars[key in bars ? `<duplicate bar ${key}>` : key] = value;
  }
  out.charts[id] = bars;
}
return out;
""", CARDS=CARD_KEYS, FIELDS=VARIANT_FIELDS, METRICS=AB_METRICS, CHART_IDS=list(CHARTS))


def expected_summary(summary: dict[str, Any], ab: dict[str, Any], as_of: str
                     ) -> dict[str, Any]:
    """What READ_SUMMARY must find for a summary (the API's, or the recount's) and its
    A/B statistics."""
    by_name = {v["variant"]: v for v in ab["variants"]}
    lifts = {c["variant"]: c["metrics"] for c in ab["comparisons"]}
    variants = {}
    for name, variant in summary["variants"].items():
        counts = variant["first_attempts"] or variant  # the A/B table's: first attempts
        metrics = by_name[name]["metrics"]
        interval = {m: metrics[m]["interval"] or {"low": None, "high": None} for m in AB_METRICS}
        variants[name] = {
            "fields": {f: counts[f] for f in VARIANT_FIELDS},
            "rate": {m: metrics[m]["rate"] for m in AB_METRICS},
            "low": {m: interval[m]["low"] for m in AB_METRICS},
            "high": {m: interval[m]["high"] for m in AB_METRICS},
            "lift": {m: lifts[name][m]["lift"] if name in lifts else None for m in AB_METRICS},
        }
    return {
        "as_of": as_of,
        "cards": {k: summary[k] for k in CARD_KEYS},
        "variants": variants,
        "verdict": ab["verdict"]["status"],
        "srm_hidden": not ab["sample_ratio"]["flagged"],
        "charts": {chart: {k: v for k, v in summary[key].items() if v}
                   for chart, key in CHARTS.items()},
    }


def expected_now(site: Site) -> dict[str, Any]:
    """The API's summary and A/B statistics as the page must show them, after checking
    that they equal the batch recount of every event published so far."""
    api = site.api
    summary = api.json(f"/api/v1/campaigns/{CAMPAIGN}")
    ab = api.json(f"/api/v1/campaigns/{CAMPAIGN}/ab")
    want = recount(site.events)[CAMPAIGN]
    assert _pick(summary) == _pick(want)
    from_api = expected_summary(summary, ab, summary["as_of"])
    want_ab = json.loads(json.dumps(ab_statistics(first_attempt_counts(want["variants"]),
                                                  AbConfig())))
    assert {k: ab[k] for k in want_ab} == want_ab
    assert expected_summary(want, want_ab, summary["as_of"]) == from_api
    return from_api


def _table_reader(table: str, id_attr: str, fields: tuple[str, ...], prev: str | None,
                  next_: str | None) -> str:
    body = "const out = {rows: rows(TABLE, ID, FIELDS)};\n"
    if prev and next_:
        body += "out.prev_disabled = disabled(PREV); out.next_disabled = disabled(NEXT);\n"
    return _reader(body + "return out;", TABLE=f"{table} tbody tr[{id_attr}]", ID=id_attr,
                   FIELDS=list(fields), PREV=prev, NEXT=next_)


READ_MESSAGES = _table_reader("table#messages", "data-message-id", MESSAGE_FIELDS,
                              "#messages-prev", "#messages-next")
READ_REPLIES = _table_reader("table#replies", "data-event-id", REPLY_FIELDS,
                             "#replies-prev", "#replies-next")
READ_CLICKS = _table_reader("table#clicks", "data-contact-id", CLICK_FIELDS,
                            "#clicks-prev", "#clicks-next")
READ_CONTACT_CLICKS = _table_reader("table#contact-clicks-table", "data-event-id",
                                    CONTACT_CLICK_FIELDS, None, None)
READ_CLICK_CARDS = _reader("""
const out = {};
for (const k of KEYS) out[k] = one(document, `#clicks-summary [data-card="${k}"]`, "data-value");
return out;
""", KEYS=["link_clicks", "unique_link_clicks", "link_click_rate"])
READ_CAMPAIGNS = _reader("""
return [...document.querySelectorAll("table#campaigns tbody tr[data-campaign-id]")].map(tr => {
  const id = tr.getAttribute("data-campaign-id");
  const row = {id, link: tr.querySelectorAll(`a[href="/campaigns/${id}"]`).length === 1};
  for (const f of FIELDS) row[f] = one(tr, `td[data-field="${f}"]`, "data-value");
  return row;
});
""", FIELDS=["sent", "delivery_rate", "as_of"])


def api_pages(api: Api, path: str, limit: int = PAGE_SIZE) -> list[list[dict[str, Any]]]:
    """The API's pages of ``path`` (each a list of items), following ``next_cursor``."""
    sep = "&" if "?" in path else "?"
    page = api.json(f"{path}{sep}limit={limit}")
    pages = [page["items"]]
    while page["next_cursor"] is not None:
        page = api.json(f"{path}{sep}limit={limit}&cursor={page['next_cursor']}")
        pages.append(page["items"])
    return pages


def expected_rows(items: list[dict[str, Any]], id_key: str, fields: tuple[str, ...]
                  ) -> list[dict[str, Any]]:
    return [{"id": item[id_key], **{f: item[f] for f in fields}} for item in items]


def walk_pages(page: Page, reader: str, pages: list[list[dict[str, Any]]], id_key: str,
               fields: tuple[str, ...], prev: str, next_: str, what: str) -> None:
    """Clicks ``next_`` through every page, each equal to the API's page of the same
    size, with prev/next disabled exactly at the ends; then ``prev`` once."""
    assert pages and pages[0], f"{what}: the API has no rows to compare"
    expected = [{"rows": expected_rows(items, id_key, fields), "prev_disabled": i == 0,
                 "next_disabled": i == len(pages) - 1} for i, items in enumerate(pages)]
    for i, want in enumerate(expected):
        if i:
            page.click(next_)
        wait_equal(page, reader, want, f"{what}, page {i + 1} of {len(pages)}")
    if len(expected) > 1:
        page.click(prev)
        wait_equal(page, reader, expected[-2], f"{what}, back to page {len(pages) - 1}")


def assert_fits(page: Page, what: str) -> None:
    """No horizontal overflow of the document."""
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (
        f"{what}: the document is {widths[0]} px wide in a {widths[1]} px viewport")


# --- the live system and the browser ---------------------------------------------------


@dataclass
class Site:
    deployment: Deployment
    api: Api
    port: int
    events: list[dict[str, Any]]  # every event published so far
    starts: int = 1

    def wait_ready(self) -> None:
        api = self.api
        api.wait(lambda: api.json("/readyz")["status"] == "ready", "readiness")

    def restart_api(self) -> None:
        """A new API process on the same port (the old one stopped)."""
        self.starts += 1
        self.api = Api(self.deployment, self.port, self.deployment.root / f"api-{self.starts}.log")
        self.wait_ready()

    def settle(self) -> None:
        """Until the API's summaries equal the recount of every event published and
        the message log has every message's latest state."""
        api, want = self.api, recount(self.events)
        for campaign_id in ("camp-ab", "camp-plain"):
            api.wait(lambda c=campaign_id: _pick(api.json(f"/api/v1/campaigns/{c}"))
                     == _pick(want[c]), f"the summary of {campaign_id}")
        expected = expected_log(self.events, CAMPAIGN)
        api.wait(lambda: _statuses(
            item for items in api_pages(api, f"/api/v1/campaigns/{CAMPAIGN}/messages", 500)
            for item in items) == _statuses(expected.values()), "the complete message log")


@contextlib.contextmanager
def _live_site(kafka_bootstrap: str, root: Path, env: dict[str, str],
               events: list[dict[str, Any]]) -> Iterator[Site]:
    """A worker and ``campaign-analytics api`` on their own topics under ``root`` with
    ``env``, ``events`` published; the site once it answers. Stops both after."""
    deployment = Deployment(kafka_bootstrap, root)
    deployment.env |= env
    worker = deployment.worker().start()
    api: Api | None = None
    live: Site | None = None
    try:
        worker.wait_ready()
        deployment.cli("publish", str(_write(root / "events.jsonl", events)))
        port = free_port()
        api = Api(deployment, port, root / "api-1.log")
        live = Site(deployment, api, port, events)
        live.wait_ready()
        yield live
    finally:
        current = live.api if live is not None else api  # (the API may have restarted)
        if current is not None:
            current.stop()
        deployment.close()
        shutil.rmtree(root / "state", ignore_errors=True)


@pytest.fixture(scope="module")
def site(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A worker and ``campaign-analytics api`` (token required) on their own topics,
    with the messy events published and folded everywhere."""
    with _live_site(kafka_bootstrap, tmp_path_factory.mktemp("page"),
                    {"CA_API_TOKEN": TOKEN, "CA_CONVERSATION_URL_TEMPLATE": CONVERSATIONS},
                    _messy_events()) as live:
        live.settle()
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("CA_SCREENSHOT_DIR")
    folder = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# GET .../winner answers 404 until the campaign has a decision; Chromium logs that
# response as a console error too. Only that route's 404, nothing else, is not a problem.
NO_DECISION_YET = re.compile(
    r"(^response 404: GET |status of 404 .*\()[^ ]*/api/v1/campaigns/[^/ ]+/winner\)?$")


@dataclass
class Watch:
    """What went wrong in a browser context: console errors, uncaught page errors,
    failed requests, error responses and requests off the API's origin. Inside
    ``tolerating(pred)`` the problems ``pred`` accepts are kept apart as expected."""

    context: BrowserContext
    origin: str
    problems: list[str] = field(default_factory=list)
    tolerated: list[str] = field(default_factory=list)
    accept: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        self.handlers: list[tuple[str, Callable[[Any], None]]] = [
            ("console", self._console), ("weberror", self._web_error),
            ("requestfailed", self._failed), ("response", self._response),
            ("request", self._request)]
        for event, handler in self.handlers:
            self.context.on(event, handler)  # type: ignore[call-overload]

    def detach(self) -> None:
        for event, handler in self.handlers:
            self.context.remove_listener(event, handler)

    def _add(self, problem: str, always: bool = False) -> None:
        if NO_DECISION_YET.search(problem):
            return  # the page asks for the winner decision: 404 is "none yet", an answer
        if not always and self.accept is not None and self.accept(problem):
            self.tolerated.append(problem)
        else:
            self.problems.append(problem)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._add(f"console error: {message.text} ({message.location.get('url')})")

    def _web_error(self, error: WebError) -> None:
        self._add(f"uncaught error in the page: {error.error}", always=True)

    def _failed(self, request: Request) -> None:
        self._add(f"request failed: {request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self._add(f"response {response.status}: {response.request.method} {response.url}")

    def _request(self, request: Request) -> None:
        url = request.url
        if not (url.startswith(self.origin + "/") or url.startswith(("data:", "blob:"))):
            self._add(f"request off the API's origin: {url}", always=True)

    @contextlib.contextmanager
    def tolerating(self, accept: Callable[[str], bool]) -> Iterator[None]:
        self.accept = accept
        try:
            yield
        finally:
            self.accept = None


@dataclass
class Opened:
    page: Page
    watch: Watch


@pytest.fixture
def open_page(browser: Browser, site: Site) -> Iterator[Callable[..., Opened]]:
    """Opens a page in a fresh context (the token in sessionStorage unless
    ``token=False``); at teardown, fails on any problem its Watch recorded."""
    yield from _pages(browser, site)


def _pages(browser: Browser, site: Site) -> Iterator[Callable[..., Opened]]:
    opened: list[Opened] = []

    def open_(path: str = f"/campaigns/{CAMPAIGN}", *, width: int = 1280, height: int = 900,
              token: bool = True) -> Opened:
        context = browser.new_context(viewport={"width": width, "height": height},
                                      base_url=site.api.base, accept_downloads=True)
        context.set_default_timeout(WAIT_MS)
        if token:
            context.add_init_script(
                f"sessionStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(TOKEN)})")
        one = Opened(context.new_page(), Watch(context, site.api.base))
        opened.append(one)
        one.page.goto(path)
        return one

    yield open_
    problems = [p for one in opened for p in one.watch.problems]
    for one in opened:
        one.watch.detach()  # closing aborts the page's stream: not a problem of the page
        one.page.context.close()
    assert not problems, "the browser reported:\n  " + "\n  ".join(problems)


def _mark(page: Page) -> None:
    page.evaluate("() => { window.__marker = 1; }")


def _assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("() => window.__marker") == 1, "the page was reloaded"


# --- the tests -------------------------------------------------------------------------


def test_campaign_list_shows_every_campaign_with_a_link(site: Site, open_page: Any,
                                                        shots: Path) -> None:
    page = open_page("/").page
    listed = site.api.json("/api/v1/campaigns")["campaigns"]
    assert {"camp-ab", "camp-plain"} <= {c["campaign_id"] for c in listed}
    wait_equal(page, READ_CAMPAIGNS, lambda: [
        {"id": c["campaign_id"], "link": True, "sent": c["sent"],
         "delivery_rate": c["delivery_rate"], "as_of": c["as_of"]}
        for c in site.api.json("/api/v1/campaigns")["campaigns"]], "the campaign list")
    assert_fits(page, "/ at 1280 px")
    page.screenshot(path=str(shots / "campaigns.png"), full_page=True)
    page.click(f'table#campaigns a[href="/campaigns/{CAMPAIGN}"]')
    page.wait_for_url(f"**/campaigns/{CAMPAIGN}")
    expect(page.locator('#cards [data-card="sent"]')).to_have_attribute(
        "data-value", str(recount(site.events)[CAMPAIGN]["sent"]))


def test_cards_variants_and_charts_equal_the_api_and_the_recount(site: Site,
                                                                 open_page: Any) -> None:
    page = open_page().page
    wait_equal(page, READ_SUMMARY, lambda: expected_now(site), "summary, A/B section and charts")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#verdict")).not_to_be_empty()
    # the time series: a 1-minute / 1-hour toggle, drawn as SVG
    minute, hour = (page.locator(f'button[data-window="{w}"]') for w in (60, 3600))
    for pressed, other in ((hour, minute), (minute, hour)):
        pressed.click()
        expect(pressed).to_have_attribute("aria-pressed", "true")
        expect(other).to_have_attribute("aria-pressed", "false")
        expect(page.locator("svg#chart-timeseries *").first).to_be_attached()


def test_message_log_status_filter_and_pages_equal_the_api(site: Site, open_page: Any) -> None:
    page = open_page().page
    expect(page.locator("#tab-messages")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-messages")).to_be_visible()
    expect(page.locator("table#messages")).to_have_attribute("data-page-size", str(PAGE_SIZE))
    options = page.eval_on_selector_all("select#status-filter option",
                                        "(os) => os.map(o => o.value)")
    assert options == ["", *MESSAGE_STATUSES]
    base = f"/api/v1/campaigns/{CAMPAIGN}/messages"
    counts = {status: len(expected_log(site.events, CAMPAIGN)) if not status else sum(
        1 for m in expected_log(site.events, CAMPAIGN).values() if m["status"] == status)
        for status in ("", "undelivered", "failed")}
    assert counts[""] > 2 * PAGE_SIZE and counts["undelivered"] > PAGE_SIZE and counts["failed"]
    for status in ("", "undelivered", "failed"):
        pages = api_pages(site.api, f"{base}?status={status}" if status else base)
        assert sum(map(len, pages)) == counts[status]
        page.select_option("select#status-filter", status)
        walk_pages(page, READ_MESSAGES, pages, "message_id", MESSAGE_FIELDS, "#messages-prev",
                   "#messages-next", f"messages (status={status or 'all'})")


def test_replies_and_link_clicks_tabs_equal_the_api(site: Site, open_page: Any) -> None:
    page = open_page().page
    page.click("#tab-replies")
    expect(page.locator("#tab-replies")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-replies")).to_be_visible()
    expect(page.locator("#panel-messages")).to_be_hidden()
    replies = api_pages(site.api, f"/api/v1/campaigns/{CAMPAIGN}/replies")
    assert sum(map(len, replies)) == recount(site.events)[CAMPAIGN]["replies"]
    walk_pages(page, READ_REPLIES, replies, "event_id", REPLY_FIELDS, "#replies-prev",
               "#replies-next", "replies")

    page.click("#tab-clicks")
    expect(page.locator("#panel-clicks")).to_be_visible()
    summary = site.api.json(f"/api/v1/campaigns/{CAMPAIGN}")
    wait_equal(page, READ_CLICK_CARDS, {k: summary[k] for k in (
        "link_clicks", "unique_link_clicks", "link_click_rate")}, "link click totals")
    contacts = api_pages(site.api, f"/api/v1/campaigns/{CAMPAIGN}/clicks")
    assert sum(map(len, contacts)) == summary["unique_link_clicks"]
    walk_pages(page, READ_CLICKS, contacts, "contact_id", CLICK_FIELDS, "#clicks-prev",
               "#clicks-next", "clicks per contact")
    # the page shown now is the one before the last: open its most active contact
    shown = contacts[-2] if len(contacts) > 1 else contacts[-1]
    contact = max(shown, key=lambda c: (c["clicks"], c["contact_id"]))
    assert contact["clicks"] > 1
    expect(page.locator("#contact-clicks")).to_be_hidden()
    page.locator(f'table#clicks tr[data-contact-id="{contact["contact_id"]}"]'
                 " button.open-contact").click()
    expect(page.locator("#contact-clicks")).to_be_visible()
    expect(page.locator("#contact-clicks-title")).not_to_be_empty()
    each = [c for items in api_pages(
        site.api, f"/api/v1/campaigns/{CAMPAIGN}/clicks?contact_id={contact['contact_id']}")
        for c in items]
    assert len(each) == contact["clicks"]
    wait_equal(page, READ_CONTACT_CLICKS, {"rows": expected_rows(
        each, "event_id", CONTACT_CLICK_FIELDS)}, f"the clicks of {contact['contact_id']}")


def test_export_button_downloads_one_row_per_message(site: Site, open_page: Any) -> None:
    page = open_page().page
    expect(page.locator("button#export")).to_be_enabled()
    with page.expect_download(timeout=30_000) as info:
        page.click("button#export")
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename == f"{CAMPAIGN}.csv"
    body = Path(download.path()).read_bytes()
    code, _, from_api = site.api.get(f"/api/v1/campaigns/{CAMPAIGN}/export.csv")
    assert code == 200 and body == from_api
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    expected = expected_log(site.events, CAMPAIGN)
    assert len(rows) == len(expected)
    assert _statuses(rows) == _statuses(expected.values())


@pytest.mark.parametrize(("width", "height", "name"), [
    (1280, 900, "campaign-desktop.png"), (375, 812, "campaign-mobile.png")])
def test_page_fits_and_works_at_each_width(site: Site, open_page: Any, shots: Path,
                                           width: int, height: int, name: str) -> None:
    page = open_page(width=width, height=height).page
    wait_equal(page, READ_SUMMARY, lambda: expected_now(site), f"the page at {width} px")
    for key in CARD_KEYS:
        expect(page.locator(f'#cards [data-card="{key}"]')).to_be_visible()
    # in one evaluation: a live update re-renders the cards
    boxes = page.evaluate("""(keys) => keys.map((k) => {
      const card = document.querySelector(`#cards [data-card="${k}"]`);
      const r = card.getBoundingClientRect();
      return [k, r.left, r.right, r.height, card.textContent.trim() !== ""];
    })""", list(CARD_KEYS))
    outside = [b for b in boxes if not (0 <= b[1] < b[2] <= width and b[3] > 0 and b[4])]
    assert not outside, f"cards outside the {width} px viewport, or empty: {outside}"
    for chart in ("chart-timeseries", *CHARTS):
        expect(page.locator(f"svg#{chart}")).to_be_visible()
    assert_fits(page, f"the campaign page at {width} px")
    # the controls are labelled, and reachable with the keyboard
    for control in ("select#status-filter", "button#export", "#messages-prev",
                    "#messages-next", 'button[data-window="60"]', 'button[data-window="3600"]',
                    "#tab-messages", "#tab-replies", "#tab-clicks"):
        expect(page.locator(control)).to_have_accessible_name(re.compile(r"\S"))
    focusable = page.eval_on_selector_all(
        "select#status-filter, button#export, button[data-window], [role=tab][aria-selected=true]",
        "(els) => els.map(e => [e.id || e.outerHTML.slice(0, 60), e.tabIndex])")
    assert all(index >= 0 for _, index in focusable), focusable
    page.click("#tab-messages")
    expect(page.locator("table#messages tbody tr[data-message-id]").first).to_be_visible()
    assert_fits(page, f"the message log at {width} px")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    page.screenshot(path=str(shots / name), full_page=True)


def test_token_form_then_the_page_loads(site: Site, open_page: Any) -> None:
    opened = open_page("about:blank", token=False)
    page, watch = opened.page, opened.watch
    unauthorized = re.compile(r"\b401\b")
    with watch.tolerating(lambda p: bool(unauthorized.search(p))):
        page.goto(f"/campaigns/{CAMPAIGN}")
        form = page.locator("form#token-form")
        expect(form).to_be_visible()
        field_ = page.get_by_label("API token")
        expect(field_).to_have_id("token-input")
        assert page.evaluate(f"() => sessionStorage.getItem({json.dumps(TOKEN_KEY)})") is None
        field_.fill(TOKEN)
        form.locator("button[type=submit], input[type=submit]").click()
        wait_equal(page, READ_SUMMARY, lambda: expected_now(site), "the page after the token")
    assert watch.tolerated, "no 401 was seen before the token was given"
    expect(form).to_be_hidden()
    assert page.evaluate(f"() => sessionStorage.getItem({json.dumps(TOKEN_KEY)})") == TOKEN
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def test_negative_controls_a_wrong_value_fails_each_check(site: Site, open_page: Any) -> None:
    """The checks the tests rely on do fail: on a changed number, a changed row, a
    missing element, an overflowing document, a console error, an uncaught exception,
    an error response and a reload."""
    opened = open_page()
    page = opened.page
    expected = expected_now(site)
    wait_equal(page, READ_SUMMARY, expected, "the summary")
    wrong = copy.deepcopy(expected)
    wrong["cards"]["sent"] += 1
    with pytest.raises(AssertionError, match=r"cards\.sent: page has '\d+', expected \d+"):
        wait_equal(page, READ_SUMMARY, wrong, "a changed card", timeout_ms=500)
    wrong = copy.deepcopy(expected)
    name = next(iter(wrong["variants"]))
    wrong["variants"][name]["rate"]["click_rate"] += 1e-12  # a float off by its last digits
    with pytest.raises(AssertionError, match=rf"variants\.{name}\.rate\.click_rate"):
        wait_equal(page, READ_SUMMARY, wrong, "a changed rate", timeout_ms=500)
    wrong = copy.deepcopy(expected)
    wrong["charts"]["chart-by-carrier"]["att"] += 1
    with pytest.raises(AssertionError, match=r"charts\.chart-by-carrier\.att"):
        wait_equal(page, READ_SUMMARY, wrong, "a changed bar", timeout_ms=500)

    first = api_pages(site.api, f"/api/v1/campaigns/{CAMPAIGN}/messages")
    rows: dict[str, Any] = {"rows": expected_rows(first[0], "message_id", MESSAGE_FIELDS),
            "prev_disabled": True, "next_disabled": False}
    wait_equal(page, READ_MESSAGES, rows, "the first page")
    swapped = copy.deepcopy(rows)
    swapped["rows"][0], swapped["rows"][1] = swapped["rows"][1], swapped["rows"][0]
    with pytest.raises(AssertionError, match=r"rows\[0\]\.id"):
        wait_equal(page, READ_MESSAGES, swapped, "two rows swapped", timeout_ms=500)
    shorter = copy.deepcopy(rows)
    shorter["rows"].pop()
    with pytest.raises(AssertionError, match=r"rows: page has 25 items, expected 24"):
        wait_equal(page, READ_MESSAGES, shorter, "a row fewer", timeout_ms=500)

    page.evaluate("() => document.querySelector('#cards [data-card=\"sent\"]').remove()")
    with pytest.raises(AssertionError, match=r"cards\.sent: page has '<0 elements match"):
        wait_equal(page, READ_SUMMARY, expected, "a missing card", timeout_ms=500)
    page.evaluate("() => { const d = document.createElement('div');"
                  " d.style.width = '3000px'; d.style.height = '1px';"
                  " document.body.append(d); }")
    with pytest.raises(AssertionError, match="wide in a 1280 px viewport"):
        assert_fits(page, "a 3000 px element")

    # the Watch hears a console error, an uncaught exception and an error response
    watch = opened.watch
    assert not watch.problems
    page.evaluate("""() => {
      console.error("negative control: console");
      setTimeout(() => { throw new Error("negative control: uncaught"); });
      fetch("/negative-control-no-such-route");
    }""")
    kinds = ("console error: negative control", "uncaught error in the page: negative control",
             "response 404: GET " + site.api.base + "/negative-control-no-such-route")
    assert poll(page, lambda: all(any(p.startswith(k) for p in watch.problems)
                                  for k in kinds), 5_000), watch.problems
    assert all("negative" in p for p in watch.problems), watch.problems
    watch.problems.clear()

    _mark(page)
    page.reload()
    with pytest.raises(AssertionError, match="the page was reloaded"):
        _assert_not_reloaded(page)
    # (the reload cut the old document's event stream: not a problem of the page)
    watch.problems[:] = [p for p in watch.problems if "net::ERR_ABORTED" not in p]


def _publish_more(site: Site, messages: int, seed: int, suffix: str) -> None:
    """New messages of the campaign through the real input topics (ids made unique)."""
    more = generate_campaign(CAMPAIGN, messages, seed=seed, duplicate_rate=0)
    for e in more:
        e["message_id"] += f"-{suffix}"
        e["event_id"] += f"-{suffix}"
    site.deployment.cli("publish", str(_write(site.deployment.root / f"{suffix}.jsonl", more)))
    site.events.extend(more)


def test_new_events_update_the_page_without_a_reload(site: Site, open_page: Any) -> None:
    page = open_page().page
    before = expected_now(site)
    wait_equal(page, READ_SUMMARY, before, "the summary before")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    _mark(page)
    _publish_more(site, 12, seed=161, suffix="more")
    want = recount(site.events)[CAMPAIGN]
    assert want["sent"] > before["cards"]["sent"]
    # the page moves on its own: the sent card reaches the new recount
    expect(page.locator('#cards [data-card="sent"]')).to_have_attribute(
        "data-value", str(want["sent"]), timeout=LIVE_MS)
    site.settle()
    wait_equal(page, READ_SUMMARY, lambda: expected_now(site), "the summary after new events",
               timeout_ms=LIVE_MS)
    _assert_not_reloaded(page)
    status = page.locator("#live-status")
    expect(status).to_have_attribute("data-state", "live")
    expect(status).to_be_visible()
    expect(status).to_contain_text(re.compile("live", re.IGNORECASE))


def test_reconnects_after_the_api_restarts(site: Site, open_page: Any) -> None:
    opened = open_page()
    page, watch = opened.page, opened.watch
    wait_equal(page, READ_SUMMARY, lambda: expected_now(site), "the summary before the restart")
    status = page.locator("#live-status")
    expect(status).to_have_attribute("data-state", "live")
    _mark(page)
    # while the API is away, its refused and failed requests are what is expected
    with watch.tolerating(lambda p: site.api.base in p or "net::ERR_" in p):
        site.api.stop()
        expect(status).to_have_attribute("data-state", "reconnecting", timeout=20_000)
        expect(status).to_contain_text(re.compile("reconnect", re.IGNORECASE))
        site.restart_api()
        expect(status).to_have_attribute("data-state", "live", timeout=LIVE_MS)
    _assert_not_reloaded(page)
    # the new stream delivers: more events reach the page without a reload
    _publish_more(site, 5, seed=162, suffix="again")
    site.settle()
    wait_equal(page, READ_SUMMARY, lambda: expected_now(site), "the summary after the restart",
               timeout_ms=LIVE_MS)
    _assert_not_reloaded(page)
    expect(status).to_have_attribute("data-state", "live")


# --- the page's actions: commands on Kafka (issue 21) ----------------------------------


def _post(api: Api, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        api.base + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def topic_records(site: Site, topic: str, decode: Callable[[bytes], dict[str, Any]]
                  ) -> list[tuple[int, dict[str, Any]]]:
    """The campaign's records on ``topic`` (every partition, to its current end), in
    offset order, decoded."""
    settings = site.deployment.settings()

    async def read() -> list[tuple[int, dict[str, Any]]]:
        records = await read_topic(settings.kafka_bootstrap, topic)
        return sorted(((r.offset, decode(r.value)) for r in records
                       if r.key == CAMPAIGN.encode() and r.value), key=lambda r: r[0])

    # Playwright's sync API runs an event loop in this thread: read in another one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(read())).result(timeout=120)


READ_RETRY = _reader("""
const button = document.querySelector("#retry-failed");
const out = {source: button.getAttribute("data-source"), n: button.getAttribute("data-value"),
             counts: {}, panel_hidden: document.querySelector("#retry-panel").hidden,
             result: one(document, "#retry-result", "data-state")};
for (const dd of document.querySelectorAll("#retry-counts dd[data-count]"))
  out.counts[dd.getAttribute("data-count")] = dd.getAttribute("data-value");
return out;
""")


def _retry_counts(answer: dict[str, Any]) -> dict[str, Any]:
    return {"requested": answer["requested"], "scheduled_later": answer["scheduled_later"],
            "placed_by_default_zone": answer["placed_by_default_zone"],
            **{f"skipped_{k}": v for k, v in answer["skipped"].items()}}


def test_retry_failed_shows_the_dry_run_then_requests_one_round(site: Site, open_page: Any,
                                                                shots: Path) -> None:
    """The button's N is the dry run's; the panel shows the dry run's counts and writes
    nothing; Confirm (double-clicked) writes one round of N records with the reason."""
    path = f"/api/v1/campaigns/{CAMPAIGN}/retries"
    topic = site.deployment.settings().retry_requests_topic
    code, dry = _post(site.api, path, {"dry_run": True})
    assert code == 200 and dry["requested"] > 0 and dry["skipped"], dry
    page = open_page().page
    closed = {"source": "dry_run", "n": dry["requested"], "counts": {}, "panel_hidden": True,
              "result": ""}
    wait_equal(page, READ_RETRY, closed, "the Retry failed button's count")
    button = page.locator("#retry-failed")
    expect(button).to_have_accessible_name(f"Retry failed ({dry['requested']})")
    button.click()
    opened = closed | {"counts": _retry_counts(dry), "panel_hidden": False}
    wait_equal(page, READ_RETRY, opened, "the dry run's counts in the panel")
    expect(page.locator("#retry-reason")).to_be_focused()
    assert topic_records(site, topic, decode_retry_request) == [], "a dry run wrote records"

    page.get_by_label("Reason for the retry (optional)").fill("browser test")
    page.screenshot(path=str(shots / "retry-dry-run.png"))  # the header and the panel
    page.dblclick("#retry-confirm")
    wait_equal(page, READ_RETRY, opened | {"result": "done"}, "the answer of the round")
    expect(page.locator("#retry-result")).to_contain_text(f"Requested {dry['requested']} retries")
    records = [r for _, r in topic_records(site, topic, decode_retry_request)]
    assert len(records) == dry["requested"]
    assert len({r["message_id"] for r in records}) == len(records)
    assert {(r["round_id"], r["request_id"], r["reason"], r["requested_by"], r["round_size"])
            for r in records} == {(records[0]["round_id"], records[0]["request_id"],
                                   "browser test", "api", len(records))}
    assert records[0]["round_base_offset"] == 0  # the first round: valid
    # the page's request id, asked again, writes nothing new
    code, again = _post(site.api, path, {"dry_run": False,
                                         "request_id": records[0]["request_id"]})
    assert code == 200 and again["repeated"] and again["requested"] == len(records), again
    assert len(topic_records(site, topic, decode_retry_request)) == len(records)
    # closed, the button counts what is left: nothing
    page.click("#retry-cancel")
    wait_equal(page, READ_RETRY, opened | {"n": 0, "result": "done", "panel_hidden": True},
               "the count after the round", timeout_ms=LIVE_MS)


def test_only_the_no_decision_404_is_let_through() -> None:
    base = "http://127.0.0.1:1/api/v1/campaigns/camp-ab"
    assert NO_DECISION_YET.search(f"response 404: GET {base}/winner")
    assert NO_DECISION_YET.search("console error: Failed to load resource: the server "
                                  f"responded with a status of 404 (Not Found) ({base}/winner)")
    for other in (f"response 404: GET {base}/ab", f"response 500: GET {base}/winner",
                  f"response 404: POST {base}/winner", f"response 404: GET {base}/winnerx",
                  "console error: Failed to load resource: the server responded with a "
                  f"status of 500 (Internal Server Error) ({base}/winner)"):
        assert not NO_DECISION_YET.search(other), other


READ_WINNER = _reader("""
return {force: one(document, "#send-winner", "data-force"),
        form_hidden: document.querySelector("#winner-form").hidden,
        decision_hidden: document.querySelector("#winner-decision").hidden,
        variant: one(document, "#winner-decision", "data-variant"),
        forced: one(document, "#winner-decision", "data-forced"),
        result: one(document, "#winner-result", "data-state")};
""")


def test_send_winner_shows_the_verdict_and_records_one_decision(site: Site, open_page: Any,
                                                                shots: Path) -> None:
    """Send winner follows the verdict (a reason required when forced); the decision's
    record on the topic is what was asked, and the page shows it again on reload."""
    from streams.codecs.commands import decode_winner_decision

    ab = site.api.json(f"/api/v1/campaigns/{CAMPAIGN}/ab")
    verdict = ab["verdict"]
    winner = verdict["variant"] if verdict["status"] == "winner" else None
    variant = winner or sorted(v["variant"] for v in ab["variants"])[-1]
    forced = winner is None
    topic = site.deployment.settings().winner_decisions_topic
    page = open_page().page
    start = {"force": "true", "form_hidden": False, "decision_hidden": True, "variant": "",
             "forced": "", "result": ""}
    wait_equal(page, READ_WINNER, start | {"force": str(forced).lower()}, "the form")
    page.select_option("#winner-variant", variant)
    expect(page.locator("#winner-hint")).not_to_be_empty()
    button = page.locator("#send-winner")
    reason = page.get_by_label(re.compile("^Reason \\((required to force|optional)\\)$"))
    if forced:
        expect(button).to_have_accessible_name(f"Force sending {variant}")
        button.click()  # no reason: refused in the page, nothing written
        wait_equal(page, READ_WINNER, start | {"result": "error"}, "a force without a reason")
        assert topic_records(site, topic, decode_winner_decision) == []
    else:
        expect(button).to_have_accessible_name(f"Send winner {variant}")
    reason.fill("browser test: the demo must end")
    wait_equal(page, READ_WINNER, start | {"force": str(forced).lower()}, "the reason given")
    page.locator("#ab").screenshot(path=str(shots / "send-winner.png"))
    button.dblclick()
    decided = {"force": str(forced).lower(), "form_hidden": True, "decision_hidden": False,
               "variant": variant, "forced": str(forced).lower(), "result": "done"}
    wait_equal(page, READ_WINNER, decided, "the decision")
    records = [r for _, r in topic_records(site, topic, decode_winner_decision)]
    assert len(records) == 1, records
    record = records[0]
    assert (record["variant"], record["forced"], record["reason"], record["requested_by"],
            record["verdict_status"]) == (variant, forced, "browser test: the demo must end",
                                          "api", verdict["status"])
    # on reload, the page shows the decision from GET .../winner
    page.reload()
    wait_equal(page, READ_WINNER, decided | {"result": ""}, "the decision after a reload")


READ_CONVERSATIONS = _reader("""
return [...document.querySelectorAll("table#replies tbody tr[data-event-id]")].map(tr => {
  const links = tr.querySelectorAll("a.conversation");
  if (links.length !== 1) return {id: tr.getAttribute("data-event-id"), links: links.length};
  const a = links[0];
  return {id: tr.getAttribute("data-event-id"), href: a.getAttribute("href"),
          target: a.getAttribute("target"), rel: a.getAttribute("rel"),
          name: a.getAttribute("aria-label")};
});
""")


def test_replies_link_to_the_conversation(site: Site, open_page: Any) -> None:
    """With CA_CONVERSATION_URL_TEMPLATE set, every reply links to the API's
    conversation_url, in a new tab that cannot reach back to the page."""
    items = api_pages(site.api, f"/api/v1/campaigns/{CAMPAIGN}/replies")[0]
    assert items and all(r["conversation_url"] == CONVERSATIONS.format(
        contact_id=r["contact_id"]) for r in items), items[:3]
    page = open_page().page
    page.click("#tab-replies")
    wait_equal(page, READ_CONVERSATIONS, [
        {"id": r["event_id"], "href": r["conversation_url"], "target": "_blank",
         "rel": "noopener noreferrer",
         "name": f"Open the conversation with {r['contact_name'] or r['phone']}"}
        for r in items], "the replies' conversation links")


# --- issue 22: human clicks, unknown, where failures happen, what a result cost ---------
#
# A campaign of its own (camp-where) on a worker and API that have prices
# (deploy/demo/prices.csv, the demo's) and a 1 h receipt timeout: contacts in several
# countries and some no one can place, preview fetchers' clicks as messages land,
# receipts lost 3 h ago (unknown) and messages sent in the last minute (pending).

WHERE = "camp-where"
PRICES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "prices.csv"
RECEIPT_TIMEOUT_MS = 3_600_000
WHERE_CARDS = ("human_link_clicks", "unique_human_link_clicks", "human_link_click_rate",
               "link_clicks", "unique_link_clicks", "link_click_rate", "pending", "unknown",
               "cost", "cost_per_delivered", "cost_per_unique_human_click")
COST_CARDS = ("cost", "cost_per_delivered", "cost_per_unique_human_click")
PER_VARIANT_FIELDS = ("variant", "sent", "delivered", "pending", "unknown", "link_clicks",
                      "human_link_clicks", "link_click_rate", "human_link_click_rate",
                      "cost", "cost_per_delivered", "cost_per_unique_human_click")
OUTCOME_FIELDS = ("sent", "delivered", "failed", "delivery_rate")
# table id -> (its columns read, the summary key of its rows, the row key's column)
WHERE_TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "by-country": (("code", *OUTCOME_FIELDS), "by_country"),
    "by-failure-category": (("failed", "share"), "by_failure_category"),
    "by-carrier-outcome": (("carrier", *OUTCOME_FIELDS), "by_carrier_outcome"),
}
MESSAGE_WHERE_FIELDS = (*MESSAGE_FIELDS, "country", "failure_category", "human_clicks")
READ_MESSAGES_WHERE = _table_reader("table#messages", "data-message-id", MESSAGE_WHERE_FIELDS,
                                    "#messages-prev", "#messages-next")

READ_WHERE = _reader("""
const out = {cards: {}, tables: {}, sort: {}};
for (const k of CARDS) {
  const found = document.querySelectorAll(`#cards [data-card="${k}"]`);
  out.cards[k] = found.length === 1 ? found[0].getAttribute("data-value")
    : found.length === 0 ? "<absent>" : `<${found.length} cards ${k}>`;
}
for (const [id, fields] of Object.entries(TABLES)) {
  out.tables[id] = rows(`table#${id} tbody tr[data-key]`, "data-key", fields);
  const sorted = [...document.querySelectorAll(`table#${id} thead th[aria-sort]`)]
    .filter((th) => th.getAttribute("aria-sort") !== "none");
  out.sort[id] = sorted.map((th) => [th.getAttribute("data-sort-key"),
                                     th.getAttribute("aria-sort")]);
}
return out;
""", CARDS=list(WHERE_CARDS), TABLES={"per-variant": list(PER_VARIANT_FIELDS),
                                       **{k: list(v[0]) for k, v in WHERE_TABLES.items()}})


def _sorted_rows(rows: list[dict[str, Any]], column: str, descending: bool
                 ) -> list[dict[str, Any]]:
    """The page's order (SortableTable in campaign.js): by ``column``, reversed when
    ``descending``; a missing figure last either way; ties by the row's key."""
    def compare(a: dict[str, Any], b: dict[str, Any]) -> int:
        x, y = a[column], b[column]
        if x == y:
            return (a["id"] > b["id"]) - (a["id"] < b["id"])
        if x is None or y is None:
            return 1 if x is None else -1
        return (-1 if descending else 1) * ((x > y) - (x < y))
    return sorted(rows, key=functools.cmp_to_key(compare))


def _where_rows(bag: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The three tables' rows for one bag (the campaign's or a variant's), unsorted."""
    def outcomes(name: str, column: str) -> list[dict[str, Any]]:
        return [{"id": key, column: key, "sent": c["sent"], "delivered": c["delivered"],
                 "failed": c["failed"],
                 "delivery_rate": c["delivered"] / c["sent"] if c["sent"] else None}
                for key, c in bag[name].items()]
    total = sum(bag["by_failure_category"].values())
    return {"by-country": outcomes("by_country", "code"),
            "by-failure-category": [{"id": k, "failed": n, "share": n / total}
                                    for k, n in bag["by_failure_category"].items()],
            "by-carrier-outcome": outcomes("by_carrier_outcome", "carrier")}


DEFAULT_SORTS = {"per-variant": ("variant", False), "by-country": ("sent", True),
                 "by-failure-category": ("failed", True), "by-carrier-outcome": ("sent", True)}


def expected_where(summary: dict[str, Any], variant: str | None = None,
                   sorts: dict[str, tuple[str, bool]] | None = None) -> dict[str, Any]:
    """What READ_WHERE must find for a summary: the cards, the per-variant table and the
    three breakdowns of the campaign (or of ``variant``), each in its sort order."""
    sorts = DEFAULT_SORTS | (sorts or {})
    priced = summary["currency"] is not None
    cards = {k: summary[k] if priced or k not in COST_CARDS else "<absent>"
             for k in WHERE_CARDS}
    absent = '<0 elements match td[data-field="{}"]>'  # no such column without prices
    per_variant = [{"id": name, **{f: name if f == "variant" else v[f] if priced
                                   or f not in COST_CARDS else absent.format(f)
                                   for f in PER_VARIANT_FIELDS}}
                   for name, v in summary["variants"].items()]
    tables = {"per-variant": per_variant,
              **_where_rows(summary if variant is None else summary["variants"][variant])}
    tables = {k: _sorted_rows(rows, *sorts[k]) for k, rows in tables.items()}
    return {"cards": cards, "tables": tables,
            "sort": {k: [[field, "descending" if desc else "ascending"]]
                     for k, (field, desc) in sorts.items()}}


@pytest.fixture(scope="module")
def where_site(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Site]:
    """camp-where (see above) on a worker and an API with prices and a 1 h timeout."""
    events = generate_campaign(WHERE, 400, seed=22, duplicate_rate=0.1, retry_rate=0.3,
                               countries=True, previews=0.4, lost_receipts=0.1, recent=0.05)
    with _live_site(kafka_bootstrap, tmp_path_factory.mktemp("page-where"),
                    {"CA_API_TOKEN": TOKEN, "CA_PRICES_FILE": str(PRICES_FILE),
                     "CA_RECEIPT_TIMEOUT": "1h"}, events) as live:
        api = live.api
        api.wait(lambda: _pick(api.json(f"/api/v1/campaigns/{WHERE}")) == _pick(
            _where_recount(events)), f"the summary of {WHERE}")
        yield live


def _prices() -> tuple[str, Any, dict[str, Any]]:
    from streams.codecs.prices import load_prices

    table = load_prices(PRICES_FILE)
    assert table is not None
    return table.currency, table.default, dict(table.by_country)


def _where_recount(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch recount of camp-where now (unknown judged as of this instant)."""
    return recount(events, as_of=int(time.time() * 1000), receipt_timeout_ms=RECEIPT_TIMEOUT_MS,
                   prices=_prices())[WHERE]


WHERE_KEYS = ("sent", "delivered", "failed", "pending", "unknown", "link_clicks",
              "human_link_clicks", "unique_human_link_clicks", "human_link_click_rate",
              "by_country", "by_failure_category", "by_carrier_outcome", *COST_CARDS,
              "currency")


def _where_now(site: Site) -> dict[str, Any]:
    """The API's summary of camp-where, after checking that its issue 22 numbers (the
    campaign's and each variant's) equal the batch recount."""
    summary = site.api.json(f"/api/v1/campaigns/{WHERE}")
    want = _where_recount(site.events)
    for got, expected in ((summary, want), *((summary["variants"][v], want["variants"][v])
                                             for v in want["variants"])):
        assert {k: got[k] for k in WHERE_KEYS} == {k: expected[k] for k in WHERE_KEYS}
    return summary


@pytest.fixture
def open_where(browser: Browser, where_site: Site) -> Iterator[Callable[..., Opened]]:
    yield from _pages(browser, where_site)


def test_where_tables_human_clicks_unknown_and_cost_equal_the_api_and_the_recount(
        where_site: Site, open_where: Any, shots: Path) -> None:
    summary = _where_now(where_site)
    # the campaign has what the tables are about, so the equalities say something
    assert summary["unknown"] > 0 and summary["pending"] > 0
    assert 0 < summary["human_link_clicks"] < summary["link_clicks"]  # previews told apart
    assert {"US", "GB", "DE", "ZZ"} <= set(summary["by_country"])
    assert len(summary["by_failure_category"]) >= 4 and summary["cost"] > 0
    page = open_where(f"/campaigns/{WHERE}").page
    wait_equal(page, READ_WHERE, expected_where(summary), "cards and tables of the campaign")
    # the cost cards show money in the prices file's currency
    expect(page.locator('#cards [data-card="cost"] .card-value')).to_have_text(
        re.compile(r"^\$[0-9,]+\.[0-9]{2}$"))
    page.locator("#where").screenshot(path=str(shots / "campaign-where.png"))

    # one variant's breakdowns
    page.select_option("select#where-variant", "B")
    wait_equal(page, READ_WHERE, expected_where(summary, "B"), "the tables of variant B")
    page.select_option("select#where-variant", "")
    wait_equal(page, READ_WHERE, expected_where(summary), "the campaign's tables again")


def test_where_tables_sort_by_the_header_clicked(where_site: Site, open_where: Any) -> None:
    summary = _where_now(where_site)
    page = open_where(f"/campaigns/{WHERE}").page
    wait_equal(page, READ_WHERE, expected_where(summary), "the default order")
    steps = [  # (table, header clicked, the order it must then have)
        ("by-country", "code", ("code", False)),  # a name: ascending first
        ("by-country", "code", ("code", True)),  # again: reversed
        ("by-country", "failed", ("failed", True)),  # a figure: descending first
        ("by-country", "delivery_rate", ("delivery_rate", True)),
        ("by-country", "delivery_rate", ("delivery_rate", False)),
        ("by-failure-category", "share", ("share", True)),
        ("by-carrier-outcome", "carrier", ("carrier", False)),
        ("per-variant", "human_link_click_rate", ("human_link_click_rate", True)),
    ]
    sorts: dict[str, tuple[str, bool]] = {}
    for table, header, order in steps:
        page.click(f'table#{table} thead button[data-sort="{header}"]')
        sorts[table] = order
        wait_equal(page, READ_WHERE, expected_where(summary, sorts=sorts),
                   f"{table} sorted by {header}")
    # Negative control: the order is checked, not just the rows.
    reversed_ = copy.deepcopy(expected_where(summary, sorts=sorts))
    reversed_["tables"]["by-country"].reverse()
    with pytest.raises(AssertionError, match=r"tables\.by-country\[0\]"):
        wait_equal(page, READ_WHERE, reversed_, "a reversed table", timeout_ms=500)
    expect(page.locator('table#by-country th[data-sort-key="delivery_rate"]')).to_have_attribute(
        "aria-sort", "ascending")
    expect(page.locator('table#by-country th[data-sort-key="code"]')).to_have_attribute(
        "aria-sort", "none")


def test_message_log_filters_by_unknown_country_and_failure_category(
        where_site: Site, open_where: Any) -> None:
    page = open_where(f"/campaigns/{WHERE}").page
    base = f"/api/v1/campaigns/{WHERE}/messages"
    statuses = page.eval_on_selector_all("select#status-filter option",
                                         "(os) => os.map(o => o.value)")
    assert "unknown" in statuses
    expect(page.locator("select#country-filter option[value=ZZ]")).to_be_attached()
    log = expected_log(where_site.events, WHERE, as_of=int(time.time() * 1000),
                       receipt_timeout_ms=RECEIPT_TIMEOUT_MS)
    assert sum(m["status"] == "unknown" for m in log.values()) > 0
    cases = [({"status": "unknown"}, "unknown receipts"), ({"country": "DE"}, "Germany"),
             ({"country": "ZZ"}, "numbers placed nowhere"),
             ({"status": "", "country": "", "failure_category": "not_mobile"}, "landlines"),
             ({"country": "US", "failure_category": "temporary"}, "US, temporary")]
    selects = {"status": "select#status-filter", "country": "select#country-filter",
               "failure_category": "select#category-filter"}
    chosen = {"status": "", "country": "", "failure_category": ""}
    for change, what in cases:
        chosen |= change
        for name, value in change.items():
            page.select_option(selects[name], value)
        query = "&".join(f"{k}={v}" for k, v in chosen.items() if v)
        pages = api_pages(where_site.api, f"{base}?{query}")
        assert pages[0], f"{what}: the API has no such messages"
        for row in (r for items in pages for r in items):
            assert all(row[k] == v for k, v in chosen.items() if v), (what, row)
        walk_pages(page, READ_MESSAGES_WHERE, pages, "message_id", MESSAGE_WHERE_FIELDS,
                   "#messages-prev", "#messages-next", f"messages ({what})")


def test_cost_is_absent_without_prices(site: Site, open_page: Any) -> None:
    """Negative control of the cost figures: a worker without CA_PRICES_FILE gives none,
    and the page shows no cost card and no cost column (never a guessed 0)."""
    summary = site.api.json(f"/api/v1/campaigns/{CAMPAIGN}")
    assert (summary["currency"], summary["cost"], summary["cost_per_delivered"]) == (
        None, None, None)
    page = open_page().page
    wait_equal(page, READ_WHERE, expected_where(summary), "cards and tables without prices")
    expect(page.locator("table#per-variant thead th")).to_have_count(
        len(PER_VARIANT_FIELDS) - len(COST_CARDS))
    expect(page.locator('#cards [data-card="unknown"]')).to_be_visible()


def test_export_has_the_new_columns_and_costs_that_add_up_to_the_cost(
        where_site: Site) -> None:
    """The CSV export (domain.md 4's columns, then human_click_count, country,
    failure_category, cost) of camp-where: per message what the recount's log says,
    an unknown status where the receipt was lost, and costs that add up to the
    summary's cost exactly (prices of at most 4 decimals times whole segments)."""
    summary = _where_now(where_site)
    code, _, body = where_site.api.get(f"/api/v1/campaigns/{WHERE}/export.csv")
    assert code == 200
    rows = list(csv.DictReader(io.StringIO(body.decode(), newline="")))
    assert list(rows[0])[8:] == ["human_click_count", "country", "failure_category", "cost"]
    log = expected_log(where_site.events, WHERE, as_of=int(time.time() * 1000),
                       receipt_timeout_ms=RECEIPT_TIMEOUT_MS)
    assert sorted((r["phone"], r["status"], int(r["human_click_count"])) for r in rows) == \
        sorted((m["phone"], m["status"], m["human_click_count"]) for m in log.values())
    assert sum(r["status"] == "unknown" for r in rows) == summary["unknown"] > 0
    assert all((r["cost"] == "") == (r["status"] == "rejected") for r in rows)
    assert sum(Decimal(r["cost"]) for r in rows if r["cost"]) == Decimal(str(summary["cost"]))
    by_country: dict[str, int] = {}
    for r in rows:
        if r["status"] != "rejected":
            by_country[r["country"]] = by_country.get(r["country"], 0) + 1
    assert by_country == {c: n["sent"] for c, n in summary["by_country"].items() if n["sent"]}
    failed = [r["failure_category"] for r in rows
              if r["status"] in ("rejected", "undelivered", "failed")]
    assert {c: failed.count(c) for c in set(failed)} == summary["by_failure_category"]
