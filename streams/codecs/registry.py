"""The schema registry: Confluent's REST API (Apicurio Registry's ``/apis/ccompat/v7`` here).

With ``CA_SCHEMA_REGISTRY_URL`` set, a process ``install``\\ s it: the values of every
topic it produces for others (metrics, windows, commands) go out in the Confluent wire
format, each under the id ``register_produced`` got for ``<topic>-value`` (compatibility
``FULL_TRANSITIVE``), and Confluent-framed values it reads are decoded with the writer
schema of their id, asked of the registry once per id (``schemas.FRAMING``). The
consumers of input records ``resolve`` a batch's new ids before decoding it, waiting
(and saying why) while the registry cannot be reached: a good record is never
dead-lettered for it. Unset, nothing here runs and every value stays single-object.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from projections.errors import CampaignAnalyticsError
from schemas import CONFLUENT, FRAMING, SchemaVersion, latest, load_schemas, parse_version
from streams.settings import ConfigurationError

log = logging.getLogger(__name__)

COMPATIBILITY = "FULL_TRANSITIVE"  # domain.md section 1: new fields with defaults only
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
TIMEOUT_S = 5.0
# An id the registry said it lacks is asked again after this long (a registry being
# restored from a backup may get it back); until then its records are dead-lettered.
MISSING_RECHECK_S = 60.0
STARTUP_WAIT_S = 60.0  # how long a starting process waits for an unreachable registry

_LOCAL = load_schemas()
_LOCAL_BY_FINGERPRINT = {s.fingerprint: s for s in _LOCAL}


def _full_name(raw: Mapping[str, Any]) -> str:
    name, namespace = str(raw.get("name", "")), raw.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _schema_text(version: SchemaVersion) -> str:
    return (resources.files("schemas") / f"{version.name}.v{version.version}.avsc").read_text(
        "utf-8")


_NAME_OF = {_full_name(json.loads(_schema_text(s))): s.name for s in _LOCAL}


class RegistryError(CampaignAnalyticsError):
    """The registry answered a request with an error; the text is safe to log."""


class RegistryUnavailableError(RegistryError):
    """The registry cannot be reached (refused, timed out, or a 5xx answer)."""


class IncompatibleSchemaError(RegistryError):
    """The registry refuses a schema as incompatible with the subject's versions."""


class RegistryClient:
    """The few calls of Confluent's REST API this project makes (``urllib``, no pool:
    they happen at start-up and once per new schema id). ``user``/``password``: HTTP
    basic authentication (also taken from ``user:password@`` in the URL); ``cafile``:
    the CAs an https registry's certificate is checked against (else the system's)."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S, *, user: str = "",
                 password: str = "", cafile: Path | None = None) -> None:
        parts = urlsplit(url.rstrip("/"))
        userinfo, _, host = parts.netloc.rpartition("@")
        if userinfo and not user:
            user, _, password = userinfo.partition(":")
        # the URL requests go to, and what messages and logs show: no user or password
        self.url = self.shown = parts._replace(netloc=host).geturl()
        self.timeout = timeout
        self._headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        try:
            self._tls = None if cafile is None else ssl.create_default_context(
                cafile=str(cafile))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"CA_SCHEMA_REGISTRY_CAFILE: cannot load {cafile}: "
                                     f"{exc}") from None

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - an http(s) URL (settings)
            self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout,  # noqa: S310
                                        context=self._tls) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read() or b"{}")
            except ValueError:
                error = {}
            message = str(error.get("message", exc.reason))[:300]
            if exc.code >= 500:
                raise RegistryUnavailableError(
                    f"{self.shown} answered {exc.code}: {message}") from None
            if exc.code == 409:
                raise IncompatibleSchemaError(message) from None
            if exc.code in (401, 403):
                raise RegistryError(
                    f"{self.shown} refused the credentials ({exc.code}) to {method} {path}: "
                    "check CA_SCHEMA_REGISTRY_USER and its password") from None
            if exc.code == 404 and error.get("error_code") == 40403:
                return None  # no schema with that id
            raise RegistryError(f"{self.shown} answered {exc.code} to {method} {path}: "
                                f"{message}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailableError(f"{self.shown} cannot be reached: {reason}") from None

    def schema_text(self, schema_id: int) -> str | None:
        """The schema registered under ``schema_id``; ``None`` when there is none."""
        answer = self._call("GET", f"/schemas/ids/{schema_id}")
        return None if answer is None else str(answer["schema"])

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call("PUT", f"/config/{subject}", {"compatibility": level})

    def register(self, subject: str, schema: str) -> int:
        """The id of ``schema`` under ``subject`` (registered now if it is new)."""
        return int(self._call("POST", f"/subjects/{subject}/versions", {"schema": schema})["id"])


_missing_at: dict[int, float] = {}


def writer_from_text(text: str) -> SchemaVersion | None:
    """A registry schema as a writer: the project's own version when it is one (same
    fingerprint), else parsed under the name of the project's record it names (so a
    producer's own version of ``sent`` resolves into ours); ``None`` if not Avro."""
    try:
        raw = json.loads(text)
        version = parse_version(_NAME_OF.get(_full_name(raw), _full_name(raw)), 0, raw)
    except Exception:  # not JSON, not an Avro record schema: fastavro raises many kinds
        return None
    return _LOCAL_BY_FINGERPRINT.get(version.fingerprint, version)


def _lookup(client: RegistryClient, schema_id: int) -> SchemaVersion | None:
    text = client.schema_text(schema_id)  # RegistryError: nothing is cached
    writer = None if text is None else writer_from_text(text)
    FRAMING.writers[schema_id] = writer
    if writer is None:
        _missing_at[schema_id] = time.monotonic()
    return writer


def install(url: str, *, user: str = "", password: str = "",
            cafile: Path | None = None) -> RegistryClient:
    """This process reads Confluent-framed values through the registry at ``url``
    (``RegistryClient``'s credentials and CAs)."""
    client = RegistryClient(url, user=user, password=password, cafile=cafile)
    FRAMING.lookup = lambda schema_id: _lookup(client, schema_id)
    return client


def unseen_ids(values: Iterable[bytes | None]) -> set[int]:
    """Ids of the Confluent-framed values whose writer is not known yet (or was missing
    long enough ago to ask again): one byte check per value, no allocation for others."""
    writers, ids = FRAMING.writers, set()
    for value in values:
        if value and value[0] == CONFLUENT and len(value) >= 5:
            schema_id = int.from_bytes(value[1:5], "big")
            if schema_id not in writers or (
                    writers[schema_id] is None
                    and time.monotonic() - _missing_at.get(schema_id, 0.0) > MISSING_RECHECK_S):
                ids.add(schema_id)
    return ids


async def resolve(values: Iterable[bytes | None], where: str) -> None:
    """Ask the registry for the writers of a batch's new ids, each until it answers: a
    registry that cannot be reached (or refuses the request) holds the batch, and each
    try's reason is logged; an id it says it lacks is cached as missing."""
    lookup = FRAMING.lookup
    if lookup is None:
        return
    for schema_id in sorted(unseen_ids(values)):
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(lookup, schema_id)
                break
            except RegistryError as exc:
                log.warning("schema id %d of a record on %s: %s; decoding waits, trying "
                            "again in %.1f s", schema_id, where, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def produced_topics(settings: Any, *, commands_only: bool = False) -> dict[str, str]:
    """Topic -> the schema its values have, of the topics this project produces for others."""
    topics = {settings.retry_requests_topic: "retry_request",
              settings.winner_decisions_topic: "winner_decision"}
    if not commands_only:
        topics |= {settings.campaign_metrics_topic: "campaign_metrics",
                   settings.window_metrics_topic: "campaign_windows"}
    return topics


def register_produced(client: RegistryClient, topics: Mapping[str, str],
                      wait_s: float = STARTUP_WAIT_S) -> dict[str, int]:
    """Register the newest version of each topic's schema under ``<topic>-value`` with
    compatibility ``FULL_TRANSITIVE``, and write its values with that id from now on.
    An unreachable registry is waited for (``wait_s``, each try logged);
    ``IncompatibleSchemaError`` says what the registry refused."""
    deadline = time.monotonic() + wait_s
    ids: dict[str, int] = {}
    for topic, name in topics.items():
        version, subject = latest(_LOCAL, name), f"{topic}-value"
        while True:
            try:
                client.set_compatibility(subject, COMPATIBILITY)
                schema_id = client.register(subject, _schema_text(version))
                break
            except IncompatibleSchemaError as exc:
                raise IncompatibleSchemaError(
                    f"the schema registry at {client.shown} refuses {name} v{version.version} "
                    f"for subject {subject} (compatibility {COMPATIBILITY}): {exc}. Its "
                    "consumers could not read the new records: a schema change may only "
                    "add fields with defaults (docs/consumers.md)") from None
            except RegistryUnavailableError as exc:
                if time.monotonic() >= deadline:
                    raise
                log.warning("registering %s: %s; trying again in 2 s", subject, exc)
                time.sleep(2.0)
        FRAMING.frames[version.fingerprint] = bytes([CONFLUENT]) + schema_id.to_bytes(4, "big")
        FRAMING.writers[schema_id] = version
        ids[subject] = schema_id
    return ids
