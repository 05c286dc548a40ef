"""Which user agents are machines: known bots and link-preview fetchers (domain.md 3b).

A click's user agent is judged once, when the click is decoded, and the verdict rides
on the event (``LinkClicked.automated_agent``), so the fold and ``projections/`` never
load the list. The list is the maintained ``crawler-user-agents`` package (pinned in
pyproject.toml) plus ``PREVIEW_AGENTS`` below: the messaging apps' preview fetchers,
kept here too so that a release of the package that drops one cannot turn previews
back into people. A missing or empty user agent is not a machine here: the time rule
alone judges it (``projections.message.human_click_count``).
"""

from __future__ import annotations

import re

import crawleruseragents

# Substrings (case-insensitive) of the user agents messaging apps fetch link previews
# with, each with where it is documented or seen.
PREVIEW_AGENTS: tuple[str, ...] = (
    # WhatsApp: "WhatsApp/2.23.20.0 A" (Android), "... i" (iOS): seen in access logs,
    # and what Meta's link-preview guide for WhatsApp is tested with. Signal sends
    # "WhatsApp/2" too (Signal-Android, linkpreview/LinkPreviewRepository.java:
    # UserAgentInterceptor("WhatsApp/2")).
    "WhatsApp/",
    # Facebook, Messenger, Instagram: developers.facebook.com/docs/sharing/webmasters/
    # web-crawlers ("facebookexternalhit/1.1", "facebookcatalog", "meta-externalfetcher").
    "facebookexternalhit",
    "meta-externalfetcher",
    # iMessage (iOS/macOS Messages) fetches previews as a Safari that adds
    # "facebookexternalhit/1.1 Facebot Twitterbot/1.0" (peter.upfold.org.uk/blog/2019/02);
    # Apple's own crawler: support.apple.com/en-us/119829 ("Applebot/0.1").
    "Facebot",
    "Applebot",
    # X / Twitter cards: developer.x.com, cards "getting started" ("Twitterbot/1.0").
    "Twitterbot",
    # Telegram: "TelegramBot (like TwitterBot)", seen in access logs (and listed with
    # that instance in crawler-user-agents).
    "TelegramBot",
    # Slack: api.slack.com/robots ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/
    # robots)", "Slack-ImgProxy").
    "Slackbot",
    "Slack-ImgProxy",
    # Discord: "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    # seen in access logs.
    "Discordbot",
    # Skype and Microsoft Teams: "... SkypeUriPreview Preview/0.5 skype-url-preview@
    # microsoft.com"; Outlook and Teams: "MicrosoftPreview/2.0 +https://aka.ms/
    # MicrosoftPreview" (the address the agent names).
    "SkypeUriPreview",
    "MicrosoftPreview",
    # Viber: "Viber/13.3.0.5 CFNetwork/..." (and plain "Viber"), seen in access logs;
    # Yandex's antirobot treats "Viber" and "Viber/" as preview agents.
    "Viber",
    # LINE and KakaoTalk add their own token to facebookexternalhit's:
    # "facebookexternalhit/1.1;line-poker/1.0", "kakaotalk-scrap/1.0 (+https://devtalk.
    # kakao.com/t/scrap/33984)".
    "line-poker",
    "kakaotalk-scrap",
    # Snapchat: developers.snap.com/robots ("Snap URL Preview Service").
    "Snap URL Preview",
    # LinkedIn messages: "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient
    # +http://www.linkedin.com)", seen in access logs.
    "LinkedInBot",
)

_PREVIEWS = re.compile("|".join(map(re.escape, PREVIEW_AGENTS)), re.IGNORECASE)

# User agents repeat (a campaign's clicks come from a few hundred apps and browser
# builds): each is judged once. Cleared when full, so a flood of unique ones cannot
# grow it without bound.
CACHE_SIZE = 8192
_verdicts: dict[str, bool] = {}


def _judge(user_agent: str) -> bool:
    return (_PREVIEWS.search(user_agent) is not None
            or crawleruseragents.is_crawler(user_agent))


def is_automated_agent(user_agent: str | None) -> bool:
    """Whether ``user_agent`` is a known bot or link-preview fetcher; False for a
    missing or blank one (the time rule judges those)."""
    if not user_agent:
        return False
    verdict = _verdicts.get(user_agent)
    if verdict is None:
        verdict = False if user_agent.isspace() else _judge(user_agent)
        if len(_verdicts) >= CACHE_SIZE:
            _verdicts.clear()
        _verdicts[user_agent] = verdict
    return verdict
