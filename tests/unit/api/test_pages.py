"""The campaign pages as files and routes, without a browser (tests/integration/
test_page.py drives them in Chromium): served with a policy that refuses every other
origin, the filter's statuses from the code, and nothing in them that reaches out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from projections.message_log import MESSAGE_STATUSES
from streams.api.live import LiveState
from streams.api.pages import STATIC, document
from tests.unit.api.test_app import FakeStore, _run, _settings

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
# A URL with a scheme or a protocol-relative one, wherever it appears.
_REMOTE = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s"'`)<>]+""", re.IGNORECASE)
_COMMENT = re.compile(r"^\s*//.*$|/\*.*?\*/", re.MULTILINE | re.DOTALL)


def remote_references(text: str) -> list[str]:
    """Every URL of another origin the text names (the SVG namespace is a name, not a
    fetch)."""
    code = _COMMENT.sub("", text)
    return [url for url in _REMOTE.findall(code) if url != SVG_NAMESPACE]


def test_the_remote_reference_check_finds_a_cdn():
    # negative control of the check below
    assert remote_references('<script src="https://cdn.jsdelivr.net/npm/chart.js"></script>')
    assert remote_references("import x from '//unpkg.com/x.js';")
    assert remote_references("fetch(`https://example.com/${id}`)")
    assert not remote_references(f'document.createElementNS("{SVG_NAMESPACE}", "svg")')


@pytest.mark.parametrize("path", sorted(p.name for p in STATIC.iterdir()))
def test_static_files_load_nothing_from_another_origin(path: str):
    assert remote_references((STATIC / path).read_text(encoding="utf-8")) == []


def test_pages_are_served_with_a_same_origin_policy_and_no_token():
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        for path in ("/", "/campaigns/c1", "/campaigns/anything-else"):
            response = await client.get(path)  # no Authorization header
            assert response.status == 200, path
            assert response.content_type == "text/html"
            policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "connect-src 'self'" in policy
            assert "default-src 'none'" in policy
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        script = await client.get("/static/campaign.js")
        assert script.status == 200 and "javascript" in script.content_type
        assert (await client.get("/static/style.css")).content_type == "text/css"
        # the API keeps its token, and the policy rides on its answers too
        api = await client.get("/api/v1/campaigns")
        assert api.status == 401 and "Content-Security-Policy" in api.headers
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/nope.js",
                     "/static/"):
            assert (await client.get(path)).status in (403, 404), path

    _run(test, _settings(api_token="t"))  # noqa: S106 - a test value


def test_the_status_filter_offers_every_status_of_the_log():
    async def test(client: TestClient, state: LiveState, store: FakeStore) -> None:
        html = await (await client.get("/campaigns/c1")).text()
        select = re.search(r'<select id="status-filter">(.*?)</select>', html, re.S)
        assert select is not None  # (the country and category filters are selects too)
        options = re.findall(r'<option value="([^"]*)">', select.group(1))
        assert options == ["", *MESSAGE_STATUSES]
        assert "unknown" in options

    _run(test)


def test_a_page_without_its_slot_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("streams.api.pages.STATIC", tmp_path)
    (tmp_path / "layout.html").write_text("<title><!--title--></title><!--script--><!--body-->")
    (tmp_path / "notices.html").write_text("<p>notice</p>")
    (tmp_path / "page.html").write_text("<!--notices--><select><!--options--></select>")
    html = document("page.html", "T & U", "x.js", options="<option>o</option>").decode()
    assert html == "<title>T &amp; U</title>x.js<p>notice</p><select><option>o</option></select>"
    (tmp_path / "page.html").write_text("<!--notices--><select></select>")
    with pytest.raises(RuntimeError, match="options"):
        document("page.html", "T", "x.js", options="<option>o</option>")


def test_every_id_the_scripts_look_up_is_in_the_page():
    # getElementById / $("...") on a missing id is a null at run time: catch it here
    html = document("campaign.body.html", "C", "campaign.js", **{"status-options": ""}).decode()
    script = (STATIC / "campaign.js").read_text(encoding="utf-8") + (
        STATIC / "common.js").read_text(encoding="utf-8")
    ids = set(re.findall(r'\$\("([\w-]+)"\)|getElementById\("([\w-]+)"\)', script))
    wanted = {a or b for a, b in ids}
    present = set(re.findall(r'\bid="([\w-]+)"', html))
    assert wanted - present == set()
    assert {"tab-messages", "panel-replies", "contact-clicks-table"} <= wanted | present
