"""Per-variant breakdowns in the summary, and the metrics topic's Avro (v3, and v1 and
v2 records)."""

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
V1, V2, V3 = (SCHEMAS["campaign_metrics", v] for v in (1, 2, 3))


def _variant_breakdowns(summary: dict) -> dict:
    return {v: {k: m[k] for k in BREAKDOWN_KEYS} for v, m in summary["variants"].items()}


def _demo() -> tuple[list[dict], dict]:
    events = generate_campaign("c1", 400, seed=3, duplicate_rate=0.2, retry_rate=0.5)
    _, campaigns = stream_fold(events)
    return events, summarize("c1", campaigns["c1"])


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
    _, summary = _demo()
    data = outputs.encode_campaign_metrics(summary, emitted_at=1_800_000_000_000)
    assert data[:10] == MAGIC + V3.fingerprint
    decoded = outputs.decode_campaign_metrics(data)
    assert decoded.pop("emitted_at") == 1_800_000_000_000
    assert decoded == summary
    assert summary["retries"] > 0 and summary["variants"]["A"]["recovered_by_retry"] > 0
    # the record's own Metrics of the campaign carries the campaign's breakdowns too
    record = fastavro.schemaless_reader(io.BytesIO(data[10:]), V3.plain, V3.plain)
    assert {k: record["metrics"][k] for k in BREAKDOWN_KEYS} == \
        {k: summary[k] for k in BREAKDOWN_KEYS}


def test_a_reader_of_v2_still_reads_a_v3_record():
    """A consumer that has the v3 file but reads with its v2 reader schema."""
    _, summary = _demo()
    data = outputs.encode_campaign_metrics(summary, emitted_at=1)
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
              **{k: summary[k] for k in BREAKDOWN_KEYS}}
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
            **{k: summary[k] for k in BREAKDOWN_KEYS}}


def test_a_record_written_with_v1_decodes_with_the_v2_reader():
    _, summary = _demo()
    data = encode_single_object(V1, _v1_record(summary))  # as a worker before v2 wrote it
    assert data[2:10] == V1.fingerprint != V2.fingerprint
    decoded = outputs.decode_campaign_metrics(data)
    assert {k: decoded[k] for k in BREAKDOWN_KEYS} == {k: summary[k] for k in BREAKDOWN_KEYS}
    assert decoded["sent"] == summary["sent"] > 0
    for name, variant in decoded["variants"].items():  # v2's defaults
        assert {k: variant[k] for k in BREAKDOWN_KEYS} == dict.fromkeys(BREAKDOWN_KEYS, {})
        assert variant["sent"] == summary["variants"][name]["sent"]
        assert (variant["retries"], variant["first_attempts"]) == (0, None)  # v3's


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
