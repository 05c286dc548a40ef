"""Which user agents are machines (domain.md 3b, human clicks), judged once per click
when it is decoded: a table of real user agents, the cache, and the flag on the event."""

from __future__ import annotations

import json

import pytest

from projections.events import LinkClicked
from streams.codecs import user_agents
from streams.codecs.input_avro import decode_event, encode_event, parse_json_line
from streams.codecs.user_agents import is_automated_agent

NOW = 1_800_000_000_000

# (user agent, automated?) with where each was seen or documented.
REAL_AGENTS: list[tuple[str, bool]] = [
    # WhatsApp's link-preview fetcher (Android build), seen in access logs
    ("WhatsApp/2.23.20.0 A", True),
    # Signal's link previews (Signal-Android LinkPreviewRepository: "WhatsApp/2")
    ("WhatsApp/2", True),
    # Facebook / Messenger: developers.facebook.com/docs/sharing/webmasters/web-crawlers
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", True),
    # iMessage's preview (peter.upfold.org.uk/blog/2019/02): a Safari plus Facebot
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like "
     "Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0", True),
    # Applebot: support.apple.com/en-us/119829
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
     True),
    # Slack: api.slack.com/robots
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", True),
    # Telegram, seen in access logs
    ("TelegramBot (like TwitterBot)", True),
    # X / Twitter cards
    ("Twitterbot/1.0", True),
    # Discord, seen in access logs
    ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", True),
    # Google's crawler: developers.google.com/search/docs/crawling-indexing/google-common-crawlers
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
    # Skype and Teams previews, seen in access logs
    ("Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
     "skype-url-preview@microsoft.com", True),
    # Viber's preview fetcher on iOS, seen in access logs
    ("Viber/13.3.0.5 CFNetwork/1128.0.1 Darwin/19.6.0", True),
    # LinkedIn, seen in access logs
    ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
     True),
    # Snapchat: developers.snap.com/robots
    ("Mozilla/5.0 (compatible; Snap URL Preview Service; bot; snapchat; "
     "https://developers.snap.com/robots)", True),
    # People: browsers and in-app browsers as they send them (Safari on iOS 17, Chrome on
    # Android 14, Samsung Internet, Firefox and Edge on Windows, Facebook's and
    # Instagram's in-app browsers, Telegram's Android WebView), from their vendors' docs
    # and access logs
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", False),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.6367.82 Mobile Safari/537.36", False),
    ("Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36", False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", False),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67", False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.40.111;FBBV/544377524;"
     "FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.1;FBSS/3;FBCR/;FBID/phone;FBLC/en_US;"
     "FBOP/80]", False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
     "like Gecko) Mobile/15E148 Instagram 300.0.0.15.103 (iPhone14,5; iOS 16_6; en_US; en; "
     "scale=3.00; 1170x2532; 516013395)", False),
    ("Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
     "(KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36 "
     "Telegram-Android/10.3.2 (Samsung SM-A536B; Android 13; SDK 33; AVERAGE)", False),
]


@pytest.mark.parametrize(("agent", "automated"), REAL_AGENTS,
                         ids=[f"{'bot' if a else 'person'}-{i}"
                              for i, (_, a) in enumerate(REAL_AGENTS)])
def test_real_user_agents(agent: str, automated: bool) -> None:
    assert is_automated_agent(agent) is automated


def test_the_table_has_both_kinds() -> None:
    assert sum(a for _, a in REAL_AGENTS) >= 10 and sum(not a for _, a in REAL_AGENTS) >= 5


def test_the_projects_preview_agents_are_matched_on_their_own(monkeypatch) -> None:
    """Negative control of the maintained list: with it answering False for everything,
    the project's own preview agents still catch the messaging apps (and nothing of the
    people's), so a release of the package that drops one changes nothing here."""
    monkeypatch.setattr(user_agents.crawleruseragents, "is_crawler", lambda ua: False)
    monkeypatch.setattr(user_agents, "_verdicts", {})
    previews = [a for a, automated in REAL_AGENTS if automated and "Googlebot" not in a]
    assert all(is_automated_agent(a) for a in previews)
    assert not any(is_automated_agent(a) for a, automated in REAL_AGENTS if not automated)
    # ... and Googlebot is the package's alone: the control can fail
    assert not is_automated_agent(next(a for a, _ in REAL_AGENTS if "Googlebot" in a))


@pytest.mark.parametrize("agent", [None, "", "   ", "\t"])
def test_missing_or_blank_is_no_verdict(agent: str | None) -> None:
    assert is_automated_agent(agent) is False


def test_each_user_agent_is_judged_once(monkeypatch) -> None:
    calls: list[str] = []

    def counting(agent: str) -> bool:
        calls.append(agent)
        return agent.startswith("bot")

    monkeypatch.setattr(user_agents, "_judge", counting)
    monkeypatch.setattr(user_agents, "_verdicts", {})
    monkeypatch.setattr(user_agents, "CACHE_SIZE", 3)
    for _ in range(5):
        assert [is_automated_agent(a) for a in ("bot/1", "Mozilla", "bot/1")] == [
            True, False, True]
    assert calls == ["bot/1", "Mozilla"]
    for agent in ("a", "b", "c"):  # full: cleared, never grown past its size
        is_automated_agent(agent)
    assert len(user_agents._verdicts) <= 3


def _click(user_agent: str | None) -> dict:
    return {"type": "click", "event_id": "e1", "message_id": "m1", "occurred_at": NOW,
            "link_id": "l1", "user_agent": user_agent}


def test_the_verdict_rides_on_the_decoded_click_and_is_not_input() -> None:
    _, event, data = parse_json_line(json.dumps(_click("WhatsApp/2.23.20.0 A")), now_ms=NOW)
    assert isinstance(event, LinkClicked) and event.automated_agent is True
    assert decode_event(data, now_ms=NOW) == event  # judged again from the Avro record
    _, person, _ = parse_json_line(json.dumps(_click("Mozilla/5.0 (iPhone)")), now_ms=NOW)
    assert isinstance(person, LinkClicked) and person.automated_agent is False
    # an input line cannot claim a verdict: it is not a field of the click schema
    with pytest.raises(Exception, match="unknown field"):
        parse_json_line(json.dumps(_click(None) | {"automated_agent": True}), now_ms=NOW)
    # and encoding writes the input fields only (the verdict is judged, not stored)
    assert encode_event(event) == data
