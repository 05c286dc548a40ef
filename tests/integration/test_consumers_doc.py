"""The consumer example of docs/consumers.md, run as a downstream service would run it.

The code block is taken from the document (so the document cannot rot), written
to a file and run with the venv's Python against a real broker and worker, with
a copy of the ``.avsc`` files and no project code: what it decodes from the
metric topics must equal the batch recount (tests/oracle.py).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from projections.metrics import CampaignCounts
from schemas import MAGIC, encode_single_object, load_schemas
from streams.cli.demo import generate_campaign
from streams.codecs import output_avro as outputs
from tests.integration.conftest import REPO, Deployment
from tests.oracle import BREAKDOWN_KEYS, recount, recount_windows
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

DOC = REPO / "docs" / "consumers.md"
METRICS = "campaign-analytics.campaign-metrics"
WINDOWS = "campaign-analytics.campaign-windows"
METRICS_RECORD = "campaign_analytics.outputs.CampaignMetricsUpdated"
# The campaign's breakdowns at a record's top level (v1's; later ones are in Metrics only).
TOP_BREAKDOWNS = ("by_error_code", "by_carrier", "time_to_deliver", "time_to_first_click")


def _example(tmp_path: Path) -> Path:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text("utf-8"), re.S)
    (code,) = [b for b in blocks if b.startswith("# consumer.py")]
    path = tmp_path / "consumer.py"
    path.write_text(code)
    return path


def _schemas(tmp_path: Path, pattern: str = "*.avsc") -> Path:
    """A copy of the schema files, as a downstream service would ship them."""
    out = tmp_path / f"schemas-{len(list(tmp_path.glob('schemas-*')))}"
    out.mkdir()
    for path in (REPO / "schemas").glob(pattern):
        shutil.copy(path, out)
    return out


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("consumer_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_imports_nothing_but_aiokafka_fastavro_and_the_standard_library(
        tmp_path: Path):
    tree = ast.parse(_example(tmp_path).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert {"aiokafka", "fastavro"} <= imported
    assert imported - {"aiokafka", "fastavro"} <= set(sys.stdlib_module_names), imported


def _summary() -> dict[str, Any]:
    from projections.metrics import summarize
    from tests.unit.projections.test_projections import stream_fold

    _, campaigns = stream_fold(generate_campaign("c1", 200, seed=3))
    return summarize("c1", campaigns["c1"])


def test_the_example_resolves_v1_records_and_refuses_what_it_cannot_know(tmp_path: Path):
    example = _load(_example(tmp_path))
    writers, readers = example.load_schemas(_schemas(tmp_path))
    summary = _summary()
    v2 = outputs.encode_campaign_metrics(summary, emitted_at=1_800_000_000_000)
    # What "Byte order" in the document says: the spec's fingerprint bytes.
    v2_schema = max((s for s in load_schemas() if s.name == "campaign_metrics"),
                    key=lambda s: s.version)
    spec_order = bytes.fromhex(fingerprint(to_parsing_canonical_form(v2_schema.parsed),
                                           "CRC-64-AVRO"))
    assert v2[2:10] == spec_order != spec_order[::-1], "update docs/consumers.md"
    record = example.decode(v2, METRICS_RECORD, writers, readers)
    assert record["variants"] == summary["variants"]
    assert record["variants"]["A"]["by_carrier"]  # the v2 fields, filled

    v1_schema = next(s for s in load_schemas() if s.name == "campaign_metrics" and s.version == 1)
    flat = [f["name"] for f in v1_schema.parsed["fields"][2]["type"]["fields"]]
    v1 = encode_single_object(v1_schema, {
        "campaign_id": "c1", "emitted_at": 1, "metrics": {k: summary[k] for k in flat},
        "variants": {v: {k: m[k] for k in flat} for v, m in summary["variants"].items()},
        **{k: summary[k] for k in TOP_BREAKDOWNS}})
    old = example.decode(v1, METRICS_RECORD, writers, readers)
    assert old["by_carrier"] == summary["by_carrier"]
    assert old["variants"]["A"]["by_carrier"] == {}  # v2's default
    assert old["variants"]["A"]["sent"] == summary["variants"]["A"]["sent"]
    assert (old["variants"]["A"]["retries"], old["variants"]["A"]["first_attempts"]) == (0, None)

    # Negative controls: each of these is refused, not decoded into something.
    window = outputs.encode_campaign_window("c1", "60s@0", CampaignCounts(), 1)
    refused = {
        "another record": window,
        "unknown fingerprint": MAGIC + bytes(8) + v2[10:],
        "no marker": v2[10:],
    }
    for case, data in refused.items():
        with pytest.raises(ValueError):
            example.decode(data, METRICS_RECORD, writers, readers)
            pytest.fail(case)
    only_v1 = example.load_schemas(_schemas(tmp_path, "*.v1.avsc"))
    with pytest.raises(ValueError, match="unknown writer schema"):
        example.decode(v2, METRICS_RECORD, *only_v1)


def _run(example: Path, deployment: Deployment, schemas: Path
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in deployment.env.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, "-I", str(example), "--bootstrap", env["CA_KAFKA_BOOTSTRAP"],
         "--topic-prefix", env["CA_TOPIC_PREFIX"], "--schemas", str(schemas)],
        cwd=example.parent, env=env, text=True, capture_output=True, timeout=120, check=False)


def _decoded(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], Any]:
    assert result.returncode == 0, result.stderr
    return {(line["topic"], line["key"]): line["value"]
            for line in map(json.loads, result.stdout.splitlines())}


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def _as_recounted(decoded: dict[tuple[str, str], Any], campaigns: list[str]) -> dict:
    """The example's output in the shape of the recount: per campaign its metrics
    (as ``metrics`` and at the top level) and variants; its non-empty windows by
    (seconds, start), each checked against its key."""
    out: dict[str, Any] = {}
    for cid in campaigns:
        record = decoded.get((METRICS, cid))
        windows: dict[tuple[int, int], Any] = {}
        for (topic, key), w in decoded.items():
            if topic != WINDOWS or w["campaign_id"] != cid:
                continue
            start = _ms(w["window_start"])
            assert key == f"{cid}|{w['window_seconds']}|{start}"
            variants = {v: c for v, c in w["variants"].items() if any(c.values())}
            if any(w["counts"].values()) or variants:
                windows[w["window_seconds"], start] = {"counts": w["counts"],
                                                       "variants": variants}
        out[cid] = None if record is None else {
            "metrics": record["metrics"],
            "breakdowns": {k: record[k] for k in TOP_BREAKDOWNS},
            "variants": record["variants"], "windows": windows}
    return out


def _expected(events: list[dict], campaigns: list[str]) -> dict:
    out = {}
    for cid in campaigns:
        want = recount(events)[cid]
        windows = recount_windows(events, cid)
        for w in windows.values():
            w["variants"] = {v: c for v, c in w["variants"].items() if any(c.values())}
        out[cid] = {"metrics": {k: v for k, v in want.items()
                                if k not in ("campaign_id", "variants")},
                    "breakdowns": {k: want[k] for k in TOP_BREAKDOWNS},
                    "variants": want["variants"], "windows": windows}
    return out


def test_the_example_decodes_the_batch_recount_from_the_metric_topics(
        deployment: Deployment, tmp_path: Path):
    events = generate_campaign("camp-doc", 250, seed=61, duplicate_rate=0.15)
    events += generate_campaign("camp-doc-plain", 40, seed=62, variants=())
    campaigns = ["camp-doc", "camp-doc-plain"]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    worker = deployment.worker().start()
    worker.wait_ready()
    deployment.cli("publish", str(path))

    example, schemas = _example(tmp_path), _schemas(tmp_path)
    want = _expected(events, campaigns)
    assert all(want["camp-doc"]["variants"][v][k] for v in ("A", "B") for k in BREAKDOWN_KEYS)
    got: dict = {}

    def recounted() -> bool:
        nonlocal got
        got = _as_recounted(_decoded(_run(example, deployment, schemas)), campaigns)
        return got == want

    # a window may come one interval after its campaign
    wait_until(recounted, "the example consumer to read the recount", 120, 1,
               explain=lambda: f"got: {got}\nwant: {want}\nworker log:\n{worker.tail(30)}")

    # Negative controls: the recount of one message fewer differs (per variant and in
    # the breakdowns), and the example refuses records of a schema version it lacks.
    dropped = next(e["message_id"] for e in events if e["type"] == "delivery"
                   and e["status"] == "DELIVERED" and e.get("carrier")
                   and "camp-doc-plain" not in e["message_id"])
    fewer = _expected([e for e in events if e["message_id"] != dropped], campaigns)
    assert got["camp-doc"]["variants"] != fewer["camp-doc"]["variants"]
    assert got["camp-doc"]["breakdowns"] != fewer["camp-doc"]["breakdowns"]
    refused = _run(example, deployment, _schemas(tmp_path, "*.v1.avsc"))
    assert refused.returncode != 0 and "unknown writer schema" in refused.stderr
