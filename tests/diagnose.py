"""When a crash test's metrics differ from the recount: which stage went wrong?

Not a checker (``tests/oracle.py`` is): it folds the test's events with the
projections and compares, message by message, what each stage left in Kafka:
the ``messages`` changelog (step 2 of streams/engine/tables.py), the newest version
of each message on ``message-updates`` (step 3), the ``contributions``
changelog (step 4) and the sum of those contributions with the last metrics
snapshot (the views). The first stage that differs is where to look.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from projections.message import MessageState, apply_event
from projections.metrics import MessageContribution, message_contribution
from streams.cli.admin import latest_summaries, read_topic
from streams.codecs import state as serde
from streams.codecs.input_avro import parse_json_line
from streams.settings import Settings

SHOW = 5


def _expected_states(events: list[dict[str, Any]]) -> dict[str, MessageState]:
    states: dict[str, MessageState] = {}
    for event in events:
        _, decoded, _ = parse_json_line(json.dumps(event))
        state = states.get(decoded.message_id) or MessageState(decoded.message_id)
        states[decoded.message_id] = apply_event(state, decoded)
    return states


def _last_values(settings: Settings, topic: str) -> dict[str, dict[str, Any]]:
    out = {}
    for key, value in asyncio.run(read_topic(settings, topic, timeout=300)):
        if key is not None and value is not None:
            out[json.loads(key)] = json.loads(value)
    return out


def _describe(state: MessageState | None) -> str:
    if state is None:
        return "absent"
    return (f"v{state.version} sent={'yes' if state.sent else 'no'} "
            f"clicks={list(state.clicks)} events={sorted(state.seen)}")


def diagnose(settings: Settings, events: list[dict[str, Any]]) -> str:
    want = _expected_states(events)
    lines: list[str] = []

    stored = _last_values(settings, f"{settings.app_id}-messages-changelog")
    bad = [k for k in want if k not in stored or serde.state_from_dict(stored[k]) != want[k]]
    lines.append(f"messages changelog: {len(stored)} keys, {len(bad)} differ")
    for key in bad[:SHOW]:
        got = serde.state_from_dict(stored[key]) if key in stored else None
        lines.append(f"  {key}: got {_describe(got)}; want {_describe(want[key])}")

    newest: dict[str, tuple[int, MessageContribution | None]] = {}
    conflicts: dict[tuple[str, int], MessageContribution | None] = {}
    clashes = 0
    for _, value in asyncio.run(read_topic(settings, settings.message_updates_topic,
                                           timeout=300)):
        if value is None:
            continue
        message_id, version, fields = serde.decode_update_head(value)
        contribution = serde.contribution_from_dict(fields)
        earlier = conflicts.setdefault((message_id, version), contribution)
        clashes += earlier != contribution
        if message_id not in newest or newest[message_id][0] < version:
            newest[message_id] = (version, contribution)
    bad = [k for k, s in want.items()
           if (message_contribution(s) is not None or k in newest)
           and newest.get(k) != (s.version, message_contribution(s))]
    lines.append(f"message-updates: {len(newest)} messages, {len(bad)} differ in their "
                 f"newest version, {clashes} versions sent with two different contents")
    for key in bad[:SHOW]:
        lines.append(f"  {key}: newest {newest.get(key, (None,))[0]}, want v{want[key].version}")

    contributions = _last_values(settings, f"{settings.app_id}-contributions-changelog")
    total: Counter[tuple[str, str]] = Counter()
    differing: list[tuple[str, int | None, int]] = []
    for key, state in want.items():
        kept = contributions.get(key)
        held = serde.contribution_from_dict(kept["contribution"]) if kept else None
        if held is not None:
            total.update({(held.campaign_id, m): n for m, n in held.counts.items()})
        if held != message_contribution(state):
            differing.append((key, kept["version"] if kept else None, state.version))
    lines.append(f"contributions changelog: {len(contributions)} keys, "
                 f"{len(differing)} differ")
    for key, got_version, want_version in differing[:SHOW]:
        lines.append(f"  {key}: stored v{got_version}, want v{want_version}")

    summaries = asyncio.run(latest_summaries(settings))
    for campaign_id, summary in sorted(summaries.items()):
        for name in ("time_to_first_click", "time_to_deliver"):
            from_table = {m.split(":", 1)[1]: n for (c, m), n in total.items()
                          if c == campaign_id and m.startswith(name + ":")}
            if from_table != summary[name]:
                lines.append(f"views of {campaign_id} differ from the contributions in "
                             f"{name}: snapshot {summary[name]}, table {from_table}")
        for name in ("sent", "delivered", "link_clicks", "replies"):
            in_table = total[(campaign_id, name)]
            if in_table != summary[name]:
                lines.append(f"views of {campaign_id} differ from the contributions in "
                             f"{name}: snapshot {summary[name]}, table {in_table}")
    return "\n".join(lines)
