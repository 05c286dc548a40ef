"""Per-variant breakdowns in the summary, and the metrics topic's Avro (v4, and v1, v2
and v3 records; v1-v3 readers of a v4 record)."""

import io

import fastavro
import pytest
from hypothesis import given, settings

from projections.metrics import CampaignCounts, summarize
from schemas import MAGIC, encode_single_object, load_schemas
from streams.cli.demo import generate_campaign
from streams.codecs import output_avro as outputs
from tests.oracle import BREAKDOWN_KEYS, recount
from tests.unit.projections.test_projections import messy_campaigns, stream_fold

SCHEMAS = {(s.name, s.version): s for s in load_schemas()}
V1, V2, V3, V4 = (SCHEMAS["campaign_metrics", v] for v in (1, 2, 3, 4))
# domain.md 3b (issue 22): what v4 adds to every Metrics record, each with a value that
# is not the field's default (see _v4_summary).
V4_EXAMPLE: dict = {
    "human_link_clicks": 7, "unique_human_link_clicks": 5, "human_link_click_rate": 0.025,
    "unknown": 3,
    "by_country": {"US": {"sent": 9, "delivered": 7, "failed": 1},
                   "ZZ": {"sent": 1, "delivered": 0, "failed": 1}},
    "by_failure_category": {"temporary": 2, "invalid_number": 1},
    "by_carrier_outcome": {"Verizon": {"sent": 4, "delivered": 3, "failed": 1}},
    "currency": "EUR", "cost": 1.25, "cost_per_delivered": 0.125,
    "cost_per_unique_human_click": 0.25,
}
# The campaign's breakdowns at the top level of every version (v1's).
V1_BREAKDOWNS = ("by_error_code", "by_carrier", "time_to_deliver", "time_to_first_click")
V4_FIRST_ATTEMPTS = {"human_link_clicks": 6, "unique_human_link_clicks": 4}


def _variant_breakdowns(summary: dict) -> dict:
    return {v: {k: m[k] for k in BREAKDOWN_KEYS} for v, m in summary["variants"].items()}


def _demo() -> tuple[list[dict], dict]:
    events = generate_campaign("c1", 400, seed=3, duplicate_rate=0.2, retry_rate=0.5)
    _, campaigns = stream_fold(events)
    return events, summarize("c1", campaigns["c1"])


def _v4_summary(example: bool = False) -> dict:
    """The demo's summary, which has every v4 key (summarize gives them all); with
    ``example`` their values are V4_EXAMPLE's, none of them a default."""
    _, summary = _demo()
    for bag in (summary, *summary["variants"].values()):
        assert set(V4_EXAMPLE) <= set(bag) and set(V4_FIRST_ATTEMPTS) <= set(
            bag["first_attempts"]), "summarize lacks a key of campaign_metrics v4"
        if example:
            bag.update(V4_EXAMPLE)
            bag["first_attempts"].update(V4_FIRST_ATTEMPTS)
    return summary


def test_each_variant_has_the_breakdowns_of_the_batch_recount():
    events, summary = _demo()
    got = _variant_breakdowns(summary)
    assert got == _variant_breakdowns(recount(events)["c1"])
    assert set(got) == {"A", "B"}
    # every breakdown has something in it, so the equality says something
    assert all(got[v][k] for v in got for k in BREAKDOWN_KEYS), got
    # a variant's breakdowns are its own: they add up to the campaign's (all messages
    # of the demo campaign have a variant)
    for k in BREAKDOWN_KEYS:
        summed: dict[str, int] = {}
        for v in got:
            for sub, n in got[v][k].items():
                summed[sub] = summed.get(sub, 0) + n
        assert summed == summary[k]


def test_a_wrong_variant_breakdown_disagrees_with_the_recount():
    """Negative control: one carrier count moved from B to A."""
    events = generate_campaign("c1", 400, seed=3, duplicate_rate=0.2)
    _, campaigns = stream_fold(events)
    counts = campaigns["c1"]
    key = next(k for k in counts.variants["B"] if k.startswith("carrier:"))
    a, b = dict(counts.variants["A"]), dict(counts.variants["B"])
    a[key] = a.get(key, 0) + 1
    b[key] -= 1
    wrong = summarize("c1", CampaignCounts(total=counts.total, variants={"A": a, "B": b}))
    assert wrong["by_carrier"] == summarize("c1", counts)["by_carrier"]  # total unchanged
    assert _variant_breakdowns(wrong) != _variant_breakdowns(recount(events)["c1"])


@settings(max_examples=60, deadline=None)
@given(messy_campaigns())
def test_variant_breakdowns_equal_the_recount_whatever_the_order(case):
    _, shuffled = case
    _, campaigns = stream_fold(shuffled)
    summary = summarize("cx", campaigns["cx"])
    assert _variant_breakdowns(summary) == _variant_breakdowns(recount(shuffled)["cx"])


def test_summary_round_trips_through_the_metrics_record():
    summary = _v4_summary()
    data = outputs.encode_campaign_metrics(summary, emitted_at=1_800_000_000_000)
    assert data[:10] == MAGIC + V4.fingerprint
    decoded = outputs.decode_campaign_metrics(data)
    assert decoded.pop("emitted_at") == 1_800_000_000_000
    assert decoded == summary
    assert summary["retries"] > 0 and summary["variants"]["A"]["recovered_by_retry"] > 0
    # the record's own Metrics of the campaign carries the campaign's breakdowns too
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), V4.plain, V4.plain)
    assert {k: record["metrics"][k] for k in BREAKDOWN_KEYS} == \
        {k: summary[k] for k in BREAKDOWN_KEYS}


def test_v4_carries_the_new_values_for_the_campaign_and_each_variant():
    summary = _v4_summary(example=True)
    summary["variants"]["B"]["currency"] = None  # null where there are no prices
    summary["variants"]["B"]["cost"] = summary["variants"]["B"]["cost_per_delivered"] = None
    data = outputs.encode_campaign_metrics(summary, emitted_at=1)
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), V4.plain, V4.plain)
    for got, want in ((record["metrics"], summary),
                      *((record["variants"][v], summary["variants"][v]) for v in ("A", "B"))):
        assert {k: got[k] for k in V4_EXAMPLE} == {k: want[k] for k in V4_EXAMPLE}
        assert {k: got["first_attempts"][k] for k in V4_FIRST_ATTEMPTS} == \
            {k: want["first_attempts"][k] for k in V4_FIRST_ATTEMPTS}
    assert record["variants"]["B"]["cost"] is None
    assert record["metrics"]["by_country"] and record["metrics"]["cost"] is not None


def test_a_summary_without_the_v4_keys_still_encodes_with_their_defaults():
    """A summary made before a metric existed (a producer built for v3) encodes with the
    schema's defaults; a field without a default stays required."""
    _, summary = _demo()
    for bag in (summary, *summary["variants"].values()):
        for key in (*V4_EXAMPLE, "unknown"):
            bag.pop(key, None)
        for key in V4_FIRST_ATTEMPTS:
            bag["first_attempts"].pop(key, None)
    decoded = outputs.decode_campaign_metrics(outputs.encode_campaign_metrics(summary, 1))
    assert (decoded["unknown"], decoded["by_country"], decoded["cost"]) == (0, {}, None)
    assert decoded["variants"]["A"]["first_attempts"]["human_link_clicks"] == 0
    del summary["variants"]["A"]["sent"]
    with pytest.raises(KeyError, match="sent"):
        outputs.encode_campaign_metrics(summary, 1)


@pytest.mark.parametrize("old", [1, 2, 3])
def test_a_reader_of_an_older_version_still_reads_a_v4_record(old):
    """A consumer that has the v4 file but reads with its v1, v2 or v3 reader schema
    (Avro schema resolution: the fields it does not know are skipped)."""
    reader = SCHEMAS["campaign_metrics", old]
    summary = _v4_summary()
    data = outputs.encode_campaign_metrics(summary, emitted_at=1)
    assert data[2:10] == V4.fingerprint
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), V4.plain, reader.plain)
    known = [f["name"] for f in reader.parsed["fields"][2]["type"]["fields"]]
    assert list(record["metrics"]) == known
    assert {k: record["metrics"][k] for k in known if k != "first_attempts"} == \
        {k: summary[k] for k in known if k != "first_attempts"}
    assert record["by_carrier"] == summary["by_carrier"]
    for name, variant in summary["variants"].items():
        assert record["variants"][name]["sent"] == variant["sent"]
        assert "unknown" not in record["variants"][name] and "cost" not in record["variants"][name]
    if old == 3:
        assert record["metrics"]["first_attempts"] == {
            k: v for k, v in summary["first_attempts"].items() if k not in V4_FIRST_ATTEMPTS}
    if old >= 2:
        assert record["variants"]["B"]["by_carrier"] == summary["variants"]["B"]["by_carrier"]


def test_a_record_written_with_v3_decodes_with_the_v4_defaults():
    summary = _v4_summary()
    v3_fields = {f["name"] for f in V3.parsed["fields"][2]["type"]["fields"]}

    def v3_metrics(bag: dict) -> dict:
        return {**{k: bag[k] for k in v3_fields},
                "first_attempts": {k: v for k, v in bag["first_attempts"].items()
                                   if k not in V4_FIRST_ATTEMPTS}}
    record = {"campaign_id": "c1", "emitted_at": 1, "metrics": v3_metrics(summary),
              "variants": {v: v3_metrics(m) for v, m in summary["variants"].items()},
              **{k: summary[k] for k in V1_BREAKDOWNS}}
    data = encode_single_object(V3, record)  # as a worker before v4 wrote it
    assert data[2:10] == V3.fingerprint != V4.fingerprint
    decoded = outputs.decode_campaign_metrics(data)
    for bag in (decoded, decoded["variants"]["A"]):
        assert (bag["human_link_clicks"], bag["unknown"], bag["by_country"],
                bag["by_failure_category"], bag["currency"], bag["cost"],
                bag["cost_per_unique_human_click"]) == (0, 0, {}, {}, None, None, None)
        assert bag["first_attempts"]["unique_human_link_clicks"] == 0
    assert decoded["variants"]["A"]["sent"] == summary["variants"]["A"]["sent"] > 0
    assert decoded["retries"] == summary["retries"] > 0  # v3's own fields kept


def test_a_reader_of_v2_still_reads_a_v3_record():
    """A consumer that has the v3 file but reads with its v2 reader schema."""
    _, summary = _demo()
    v3_fields = [f["name"] for f in V3.parsed["fields"][2]["type"]["fields"]]
    first = [f["name"] for f in V3.parsed["fields"][2]["type"]["fields"][-1]["type"][1]["fields"]]

    def v3_metrics(bag: dict) -> dict:
        return {**{k: bag[k] for k in v3_fields},
                "first_attempts": {k: bag["first_attempts"][k] for k in first}}
    data = encode_single_object(V3, {
        "campaign_id": "c1", "emitted_at": 1, "metrics": v3_metrics(summary),
        "variants": {v: v3_metrics(m) for v, m in summary["variants"].items()},
        **{k: summary[k] for k in V1_BREAKDOWNS}})
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), V3.plain, V2.plain)
    assert record["metrics"]["sent"] == summary["sent"]
    assert "retries" not in record["metrics"]
    assert record["variants"]["B"]["by_carrier"] == summary["variants"]["B"]["by_carrier"]


def test_a_record_written_with_v2_decodes_with_the_v3_defaults():
    _, summary = _demo()
    v2_fields = {f["name"] for f in V2.parsed["fields"][2]["type"]["fields"]}
    record = {"campaign_id": "c1", "emitted_at": 1,
              "metrics": {k: summary[k] for k in v2_fields},
              "variants": {v: {k: m[k] for k in v2_fields}
                           for v, m in summary["variants"].items()},
              **{k: summary[k] for k in V1_BREAKDOWNS}}
    decoded = outputs.decode_campaign_metrics(encode_single_object(V2, record))
    assert (decoded["retries"], decoded["recovered_by_retry"], decoded["first_attempts"]) \
        == (0, 0, None)
    assert decoded["variants"]["A"]["first_attempts"] is None
    assert decoded["variants"]["A"]["sent"] == summary["variants"]["A"]["sent"]


def _v1_record(summary: dict) -> dict:
    flat = ("sent", "delivered", "failed", "pending", "replies", "unique_repliers",
            "opt_outs", "link_clicks", "unique_link_clicks", "delivery_rate", "reply_rate",
            "link_click_rate")
    return {"campaign_id": summary["campaign_id"], "emitted_at": 1_700_000_000_000,
            "metrics": {k: summary[k] for k in flat},
            "variants": {v: {k: m[k] for k in flat} for v, m in summary["variants"].items()},
            **{k: summary[k] for k in V1_BREAKDOWNS}}


def test_a_record_written_with_v1_decodes_with_the_v2_reader():
    _, summary = _demo()
    data = encode_single_object(V1, _v1_record(summary))  # as a worker before v2 wrote it
    assert data[2:10] == V1.fingerprint != V2.fingerprint
    decoded = outputs.decode_campaign_metrics(data)
    assert {k: decoded[k] for k in V1_BREAKDOWNS} == {k: summary[k] for k in V1_BREAKDOWNS}
    assert decoded["sent"] == summary["sent"] > 0
    for name, variant in decoded["variants"].items():  # v2's defaults
        assert {k: variant[k] for k in BREAKDOWN_KEYS} == dict.fromkeys(BREAKDOWN_KEYS, {})
        assert variant["sent"] == summary["variants"][name]["sent"]
        assert (variant["retries"], variant["first_attempts"]) == (0, None)  # v3's
        assert (variant["unknown"], variant["by_country"], variant["cost"]) == (0, {}, None)


def test_v1_bytes_read_as_if_v2_wrote_them_do_not_give_the_record():
    """Negative control: the writer's version (from the fingerprint) is what makes a
    v1 record readable; read with the v2 schema as writer it is garbage or an error."""
    _, summary = _demo()
    record = _v1_record(summary)
    data = encode_single_object(V1, record)
    try:
        wrong = fastavro.schemaless_reader(io.BytesIO(data[10:]), V2.plain, V2.plain)
    except Exception:  # noqa: BLE001 - any failure to decode is the expected outcome
        return
    assert wrong != fastavro.schemaless_reader(io.BytesIO(data[10:]), V1.plain, V2.plain)


@pytest.mark.parametrize("bad", ["windows record", "unknown fingerprint", "no marker"])
def test_other_records_are_refused(bad):
    _, summary = _demo()
    data = outputs.encode_campaign_metrics(summary, emitted_at=1)
    if bad == "windows record":
        counts = CampaignCounts(total={"sent": 1})
        data = outputs.encode_campaign_window("c1", "60s@0", counts, emitted_at=1)
    elif bad == "unknown fingerprint":
        data = MAGIC + b"\x00" * 8 + data[10:]
    else:
        data = data[10:]
    with pytest.raises(ValueError, match="campaign_metrics"):
        outputs.decode_campaign_metrics(data)
