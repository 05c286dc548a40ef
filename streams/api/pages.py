"""The campaign pages: static HTML, CSS and JavaScript served beside the API.

No build step and nothing fetched at run time: the files in ``static/`` are what the
browser runs (charts are SVG drawn by ``static/charts.js``). Each page is
``layout.html`` around a body fragment, put together once when the app is made. The
pages call the API from the browser, with the bearer token the user types when the
API asks for one.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from aiohttp import web

from projections.message_log import MESSAGE_STATUSES

STATIC = Path(__file__).parent / "static"

# Scripts, styles and data only from this origin: a CDN, an inline script or a
# script injected through a message body would all be refused by the browser.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _fill(text: str, **slots: str) -> str:
    for slot, value in slots.items():
        marker = f"<!--{slot}-->"
        if marker not in text:
            raise RuntimeError(f"no {marker} to fill")  # a page and its server disagree
        text = text.replace(marker, value)
    return text


def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def document(body: str, title: str, script: str, **slots: str) -> bytes:
    """``layout.html`` around the body fragment ``body``, its slots filled."""
    inner = _fill(_read(body), notices=_read("notices.html"), **slots)
    return _fill(_read("layout.html"), title=escape(title), script=script,
                 body=inner).encode()


def _page(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-cache"})


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def add_pages(app: web.Application) -> None:
    """``/`` (the campaign list), ``/campaigns/{id}`` (one campaign) and ``/static/``."""
    options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>'
                      for s in MESSAGE_STATUSES)
    index = document("campaigns.body.html", "Campaigns", "campaigns.js")
    campaign = document("campaign.body.html", "Campaign", "campaign.js",
                        **{"status-options": options})

    async def index_page(request: web.Request) -> web.Response:
        return _page(index)

    async def campaign_page(request: web.Request) -> web.Response:
        return _page(campaign)

    app.router.add_get("/", index_page)
    app.router.add_get("/campaigns/{campaign_id}", campaign_page)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.on_response_prepare.append(_security_headers)
