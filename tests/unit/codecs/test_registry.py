"""The Confluent wire format and the registry client (streams/codecs/registry.py), without
a registry: ids and writers are put in ``schemas.FRAMING`` by hand, the REST calls go to
a stub HTTP server. The real registry: tests/integration/test_schema_registry.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import fastavro
import pytest

from projections.errors import InvalidEventError
from schemas import FRAMING, WriterUnavailableError, decode_single_object, latest, load_schemas
from streams.codecs import registry
from streams.codecs.commands import decode_retry_request, encode_retry_request
from streams.codecs.dead_letters import dead_letter
from streams.codecs.input_avro import CURRENT, decode_event, encode_record
from streams.codecs.registry import (
    IncompatibleSchemaError,
    RegistryClient,
    RegistryUnavailableError,
    register_produced,
    resolve,
    unseen_ids,
    writer_from_text,
)
from streams.settings import ConfigurationError

SCHEMAS = load_schemas()
SENT_V1 = next(s for s in SCHEMAS if s.name == "sent" and s.version == 1)
RETRY = latest(SCHEMAS, "retry_request")
SENT = {"event_id": "e1", "message_id": "m1", "occurred_at": 1_790_000_000_000,
        "campaign_id": "c1", "variant": "A", "contact_id": "k1", "contact_name": None,
        "phone": "+33612345678", "outcome": "ACCEPTED", "error_code": None,
        "error_description": None}
RETRY_RECORD = {
    "request_id": "r1", "round_id": "round-1", "round_size": 1, "round_base_offset": 0,
    "campaign_id": "c1", "message_id": "m1", "original_message_id": "m1", "attempt": 1,
    "phone": "+33612345678", "contact_id": "k1", "variant": None, "failure_code": "30003",
    "time_zone": "Europe/Paris", "zone_by_default": False, "not_before": 1_790_000_000_000,
    "requested_at": 1_790_000_000_000, "requested_by": "api", "reason": ""}


@pytest.fixture(autouse=True)
def framing() -> Iterator[None]:
    """Each test starts with no registry, and leaves none behind."""
    saved = (dict(FRAMING.frames), dict(FRAMING.writers), FRAMING.lookup)
    FRAMING.frames.clear()
    FRAMING.writers.clear()
    FRAMING.lookup = None
    registry._missing_at.clear()
    try:
        yield
    finally:
        FRAMING.frames.clear()
        FRAMING.frames.update(saved[0])
        FRAMING.writers.clear()
        FRAMING.writers.update(saved[1])
        FRAMING.lookup = saved[2]


def _framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def _retry_record() -> dict[str, Any]:
    return dict(RETRY_RECORD)


def test_a_registered_version_is_written_confluent_framed_and_read_back():
    plain = encode_retry_request(_retry_record())
    assert plain[:2] == b"\xc3\x01"  # control: nothing registered, single-object
    FRAMING.frames[RETRY.fingerprint] = b"\x00\x00\x00\x00\x2a"
    FRAMING.writers[42] = RETRY
    framed = encode_retry_request(_retry_record())
    assert framed == _framed(42, plain[10:])
    assert decode_retry_request(framed) == decode_retry_request(plain)


def test_an_unknown_id_or_another_schemas_id_is_refused_by_the_output_readers():
    FRAMING.writers[7] = SENT_V1
    body = encode_retry_request(_retry_record())[10:]
    for schema_id in (7, 8):  # a sent schema's id; an id nobody knows (no registry)
        with pytest.raises(ValueError, match="not a retry_request record"):
            decode_retry_request(_framed(schema_id, body))


def test_an_output_reader_skips_a_record_while_the_registry_cannot_be_asked():
    def unreachable(schema_id: int) -> Any:
        raise RegistryUnavailableError("http://r cannot be reached: refused")

    FRAMING.lookup = unreachable
    body = encode_retry_request(_retry_record())[10:]
    with pytest.raises(ValueError, match="retry_request record: http://r cannot be reached"):
        decode_retry_request(_framed(12, body))
    with pytest.raises(WriterUnavailableError):  # a command: one line, exit 4
        decode_retry_request(_framed(12, body))
    assert 12 not in FRAMING.writers  # asked again next time


def test_a_confluent_framed_input_record_of_an_older_version_resolves_into_the_current():
    FRAMING.writers[3] = SENT_V1
    record = {k: v for k, v in SENT.items() if k in {f["name"] for f in SENT_V1.parsed["fields"]}}
    event = decode_event(_framed(3, encode_record("sent", record, SENT_V1)[10:]))
    assert (event.message_id, event.segments, event.retry_of) == ("m1", 1, None)
    # the same body single-object-encoded decodes to the same event
    assert decode_event(encode_record("sent", record, SENT_V1)) == event


def test_a_producers_own_version_of_a_schema_is_read_by_its_record_name():
    raw = json.loads(_avsc("sent", 1))
    raw["doc"] = "the producer's own copy"
    raw["fields"].append({"name": "sender_region", "type": "string", "default": "eu"})
    writer = writer_from_text(json.dumps(raw))
    assert writer is not None and writer.name == "sent" and writer != SENT_V1
    assert writer_from_text(_avsc("sent", 1)) == SENT_V1  # ours: the very version
    assert writer_from_text('{"type": "string"}') is not None  # parsed, named "string"
    assert writer_from_text("syntax = 'proto3';") is None  # not Avro
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer.parsed, {**_v1(SENT), "sender_region": "us"})
    FRAMING.writers[9] = writer
    assert decode_event(_framed(9, body.getvalue())).message_id == "m1"


def _avsc(name: str, version: int) -> str:
    return registry._schema_text(next(s for s in SCHEMAS if s.name == name
                                      and s.version == version))


def _v1(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k in {f["name"] for f in SENT_V1.parsed["fields"]}}


def test_input_refusals_say_why():
    body = encode_record("sent", SENT)[10:]
    with pytest.raises(InvalidEventError, match="no schema registry is set"):
        decode_event(_framed(5, body))
    FRAMING.lookup = lambda schema_id: None  # the registry has no such id
    with pytest.raises(InvalidEventError, match="^schema id 5: the schema registry has no"):
        decode_event(_framed(5, body))
    FRAMING.writers[6] = RETRY
    with pytest.raises(InvalidEventError, match="schema id 6 is not an input event's"):
        decode_event(_framed(6, body))
    for short in (b"", b"\x00\x00\x00", b"garbage"):
        with pytest.raises(InvalidEventError, match="not an Avro single-object-encoded"):
            decode_event(short)
    FRAMING.writers[4] = CURRENT["sent"]
    with pytest.raises(InvalidEventError, match="1 bytes after its end"):
        decode_event(_framed(4, body + b"x"))


def test_unseen_ids_look_at_the_first_byte_only():
    FRAMING.writers[1] = CURRENT["sent"]
    values = [None, b"", encode_record("sent", SENT), _framed(1, b"x"), _framed(2, b"y"),
              _framed(2, b"z"), b"\x00\x00"]
    assert unseen_ids(values) == {2}
    FRAMING.writers[2] = None  # missing: asked again only after MISSING_RECHECK_S
    registry._missing_at[2] = registry.time.monotonic()
    assert unseen_ids(values) == set()
    registry._missing_at[2] -= registry.MISSING_RECHECK_S + 1
    assert unseen_ids(values) == {2}


def test_resolve_waits_for_an_unreachable_registry_and_says_why(monkeypatch, caplog):
    answers: list[Any] = [RegistryUnavailableError("http://r cannot be reached: refused"),
                          RegistryUnavailableError("http://r answered 503: starting"),
                          CURRENT["sent"]]

    def lookup(schema_id: int) -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        FRAMING.writers[schema_id] = answer
        return answer

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(registry.asyncio, "sleep", sleep)
    asyncio.run(resolve([_framed(11, b"x")], "the fold's input"))  # control: no registry
    assert answers and not slept
    FRAMING.lookup = lookup
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        asyncio.run(resolve([_framed(11, b"x")], "the fold's input"))
    assert FRAMING.writers[11] is CURRENT["sent"] and not answers
    assert slept == [0.5, 1.0]
    assert [r.getMessage() for r in caplog.records] == [
        "schema id 11 of a record on the fold's input: http://r cannot be reached: refused; "
        "decoding waits, trying again in 0.5 s",
        "schema id 11 of a record on the fold's input: http://r answered 503: starting; "
        "decoding waits, trying again in 1.0 s"]


def test_a_dead_letter_names_the_schema_id_of_a_confluent_framed_value():
    _, _, headers = dead_letter(b"k", _framed(513, b"body"), "why", "t", 0, 1, 1_000_000)
    assert headers["schema-id"] == b"513"
    _, _, plain = dead_letter(b"k", encode_record("sent", SENT), "why", "t", 0, 1, 1_000_000)
    assert "schema-id" not in plain  # control


# --- the REST client, against a stub ---------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    answers: dict[tuple[str, str], tuple[int, Any]] = {}
    seen: list[tuple[str, str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, body))
        code, answer = self.answers.get((self.command, self.path), (404, {"error_code": 40401}))
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = _answer  # noqa: N815 - http.server's names

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serving(server: HTTPServer) -> Iterator[int]:
    """``server`` answering on a thread; its port. Shut down after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    _Stub.answers, _Stub.seen = {}, []
    with _serving(HTTPServer(("127.0.0.1", 0), _Stub)) as port:
        yield f"http://127.0.0.1:{port}/apis/ccompat/v7", _Stub


def test_register_produced_sets_compatibility_registers_and_frames(stub):
    url, handler = stub
    subject = "/apis/ccompat/v7/subjects/p.retries-value/versions"
    handler.answers = {("PUT", "/apis/ccompat/v7/config/p.retries-value"): (200, {}),
                       ("POST", subject): (200, {"id": 77})}
    ids = register_produced(RegistryClient(url), {"p.retries": "retry_request"})
    assert ids == {"p.retries-value": 77}
    assert handler.seen[0] == ("PUT", "/apis/ccompat/v7/config/p.retries-value",
                               {"compatibility": "FULL_TRANSITIVE"})
    assert json.loads(handler.seen[1][2]["schema"]) == json.loads(_avsc("retry_request",
                                                                       RETRY.version))
    assert FRAMING.frames[RETRY.fingerprint] == b"\x00\x00\x00\x00\x4d"
    assert encode_retry_request(_retry_record())[:5] == b"\x00\x00\x00\x00\x4d"
    decode_single_object(RETRY, encode_retry_request(_retry_record()), {})


def test_the_client_maps_the_registrys_answers(stub):
    url, handler = stub
    client = RegistryClient(url, timeout=5)
    handler.answers = {
        ("GET", "/apis/ccompat/v7/schemas/ids/1"): (200, {"schema": '{"type": "string"}'}),
        ("GET", "/apis/ccompat/v7/schemas/ids/2"): (404, {"error_code": 40403,
                                                           "message": "no such id"}),
        ("GET", "/apis/ccompat/v7/schemas/ids/3"): (503, {"message": "starting"}),
        ("PUT", "/apis/ccompat/v7/config/s"): (200, {}),
        ("POST", "/apis/ccompat/v7/subjects/s/versions"): (
            409, {"error_code": 409, "message": "Incompatible artifact: s [AVRO]"}),
    }
    assert client.schema_text(1) == '{"type": "string"}'
    assert client.schema_text(2) is None
    with pytest.raises(RegistryUnavailableError, match="answered 503: starting"):
        client.schema_text(3)
    with pytest.raises(registry.RegistryError, match="answered 404 to GET /schemas/ids/4"):
        client.schema_text(4)  # another 404 (no error code 40403) is no "missing id"
    with pytest.raises(IncompatibleSchemaError, match=r"refuses retry_request v\d+ for "
                       r"subject s-value .*Incompatible artifact: s \[AVRO\]"):
        handler.answers[("PUT", "/apis/ccompat/v7/config/s-value")] = (200, {})
        handler.answers[("POST", "/apis/ccompat/v7/subjects/s-value/versions")] = (
            409, {"error_code": 409, "message": "Incompatible artifact: s [AVRO]"})
        register_produced(client, {"s": "retry_request"})
    assert RETRY.fingerprint not in FRAMING.frames  # refused: still single-object


def test_an_unreachable_registry_is_one_error_that_shows_no_password():
    client = RegistryClient("http://reader:s3cret@127.0.0.1:9/apis/ccompat/v7", timeout=2)
    with pytest.raises(RegistryUnavailableError) as refused:
        client.schema_text(1)
    assert str(refused.value).startswith(
        "http://127.0.0.1:9/apis/ccompat/v7 cannot be reached: ")
    assert "s3cret" not in str(refused.value)
    assert RegistryClient("http://127.0.0.1:9/x").shown == "http://127.0.0.1:9/x"  # control
    with pytest.raises(RegistryUnavailableError):
        register_produced(client, {"t": "retry_request"}, wait_s=0)


SECRET, WRONG = "s3cret", "wrong"  # noqa: S105 - the guarded stub's own test password


class _Guarded(_Stub):
    """The stub behind HTTP basic authentication (user ``reader``, password ``s3cret``)."""

    def _answer(self) -> None:
        expected = "Basic " + base64.b64encode(b"reader:s3cret").decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super()._answer()

    do_GET = do_PUT = do_POST = _answer  # noqa: N815 - http.server's names


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The guarded stub over TLS, its certificate (self-signed, for 127.0.0.1) the CA
    file a client must be given."""
    cert, key = tmp_path / "registry.crt", tmp_path / "registry.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = HTTPServer(("127.0.0.1", 0), _Guarded)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    _Stub.answers = {("GET", "/apis/ccompat/v7/schemas/ids/1"): (200, {"schema": '"string"'})}
    _Stub.seen = []
    with _serving(server) as port:
        yield f"https://127.0.0.1:{port}/apis/ccompat/v7", cert


def test_credentials_and_a_ca_file_reach_a_guarded_https_registry(guarded):
    url, ca = guarded
    client = RegistryClient(url, timeout=5, user="reader", password=SECRET, cafile=ca)
    assert client.schema_text(1) == '"string"'
    in_url = RegistryClient(url.replace("https://", "https://reader:s3cret@"), cafile=ca)
    assert in_url.schema_text(1) == '"string"'
    assert "s3cret" not in in_url.shown and "s3cret" not in in_url.url


def test_a_guarded_registry_refuses_wrong_credentials_and_unchecked_tls_fails(guarded):
    url, ca = guarded
    for client in (RegistryClient(url, user="reader", password=WRONG, cafile=ca),
                   RegistryClient(url, cafile=ca)):  # no credentials at all
        with pytest.raises(registry.RegistryError, match=r"refused the credentials \(401\)"
                           r" to GET /schemas/ids/1: check CA_SCHEMA_REGISTRY_USER") as refused:
            client.schema_text(1)
        assert not isinstance(refused.value, RegistryUnavailableError)  # no waiting on it
        assert "wrong" not in str(refused.value)
    with pytest.raises(registry.RegistryError):  # the started worker would exit 4
        register_produced(RegistryClient(url, user="reader", password=WRONG, cafile=ca),
                          {"t": "retry_request"}, wait_s=0)
    # the certificate is checked: without the CA file the system's CAs do not know it
    with pytest.raises(RegistryUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        RegistryClient(url, user="reader", password=SECRET).schema_text(1)
    with pytest.raises(ConfigurationError, match="CA_SCHEMA_REGISTRY_CAFILE: cannot load"):
        RegistryClient(url, cafile=ca.with_name("missing.pem"))
