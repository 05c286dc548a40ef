"""``campaign-analytics``: run the worker, publish events, read summaries, export CSV.

Exit codes: 0 ok; 1 some input lines were rejected (``publish``); 2 usage or
configuration error; 3 the campaign is unknown; 4 Kafka or ClickHouse unreachable, or
Kafka refused the credentials (CA_KAFKA_USERNAME & co.: docs/security.md); 5 the state
directory cannot be written (``worker``, ``sink``); 6 another retry round of the
campaign was written first (``retry``), or a winner decision was refused or made
before (``winner``); 7 the schema registry (CA_SCHEMA_REGISTRY_URL) refuses a schema
this version writes as incompatible (``worker``, ``api``, ``retry``, ``winner``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from aiokafka.errors import KafkaError

from projections.errors import CampaignAnalyticsError
from schemas import WriterUnavailableError
from sinks.errors import StoreConfigurationError
from streams.cli.format import format_summary
from streams.codecs.registry import IncompatibleSchemaError
from streams.kafka_security import check_credentials, client_options, metadata_probe
from streams.settings import ConfigurationError, Settings, load_settings

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNKNOWN, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_STATE = 5  # the state directory cannot be written (``_check_state_dirs``)
EXIT_CONFLICT = 6  # another retry round won (``_retry``); a winner decision refused or made
EXIT_INCOMPATIBLE = 7  # the schema registry refuses a schema (streams/codecs/registry.py)

log = logging.getLogger("campaign_analytics")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="campaign-analytics",
        description="Campaign analytics for SMS campaigns: Kafka in, metrics and "
        "ClickHouse rows out. Settings come from CA_* environment variables "
        "(see streams/settings.py).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    worker = sub.add_parser("worker", help="run a stream-processing worker (Faust)")
    worker.add_argument("--web-port", type=int, default=None,
                        help="port of the worker's web server and /metrics "
                        "(default CA_WEB_PORT or 6066); workers in one directory "
                        "need different ports")
    worker.add_argument("--loglevel", default=None, help="log level (default CA_LOG_LEVEL)")

    sink = sub.add_parser("sink", help="run the ClickHouse sinks alone (with "
                          "CA_SINK_IN_WORKER=0 on the workers): message_log, events, "
                          "replies, link_clicks")
    sink.add_argument("--metrics-port", type=int, default=None,
                      help="serve Prometheus metrics on this loopback port (0: any free one)")
    sink.add_argument("--port-fd", type=int, default=None, help=argparse.SUPPRESS)
    sink.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)

    publish = sub.add_parser("publish", help="validate JSON-lines events and publish them")
    publish.add_argument("file", help="JSON-lines file, or - for standard input")

    summary = sub.add_parser("summary", help="print a campaign's current metrics")
    summary.add_argument("campaign_id")
    summary.add_argument("--json", action="store_true", help="one JSON object")

    export = sub.add_parser("export", help="write a campaign's message log as CSV")
    export.add_argument("campaign_id")
    export.add_argument("--output", "-o", required=True, help="CSV file to write (- = stdout)")

    retry = sub.add_parser("retry", help="request a retry of the campaign's failed messages "
                           "that may succeed (domain.md 3b), outside quiet hours")
    retry.add_argument("campaign_id")
    retry.add_argument("--dry-run", action="store_true",
                       help="print what would be requested; request nothing")
    retry.add_argument("--reason", default="", help="why (kept in every request record)")
    retry.add_argument("--request-id", default=None,
                       help="idempotency key: a second request with it requests nothing new")

    winner = sub.add_parser("winner", help="record the decision to send a variant to the rest "
                            "of the audience, with the A/B statistics as they stood")
    winner.add_argument("campaign_id")
    winner.add_argument("variant")
    winner.add_argument("--reason", default="", help="why (kept in the record; required "
                        "with --force)")
    winner.add_argument("--force", action="store_true",
                        help="decide although the verdict does not name this variant")

    generate = sub.add_parser("generate", help="write a messy demo A/B campaign as JSON lines")
    generate.add_argument("--campaign-id", default="demo-campaign")
    generate.add_argument("--messages", type=int, default=500)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--output", "-o", default="-", help="file to write (- = stdout)")

    api = sub.add_parser("api", help="serve the HTTP API (campaigns, A/B statistics, "
                         "message logs, live updates; /api/v1/openapi.json)")
    api.add_argument("--port", type=int, default=None,
                     help="port to listen on (default CA_API_PORT or 8080; host CA_API_HOST)")

    sql = sub.add_parser("sql", help="run a read-only SQL query: the sink process's SQL "
                         "endpoint (CA_SQL_HOST:CA_SQL_PORT), or CA_CLICKHOUSE_URL")
    sql.add_argument("query", help="one SELECT, WITH, SHOW, DESCRIBE, EXPLAIN or EXISTS")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table",
                     help="aligned columns (default), CSV with a header, or one JSON array")

    demo = sub.add_parser("demo", help="publish a demo campaign and watch its summary")
    demo.add_argument("--campaign-id", default="demo-campaign")
    demo.add_argument("--messages", type=int, default=2000)
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between summaries")
    demo.add_argument("--once", action="store_true",
                      help="stop when the summary stops changing instead of watching")
    demo.add_argument("--spread", type=float, default=0.0, metavar="SECONDS",
                      help="publish the events in waves over this many seconds (default: "
                      "all at once), so a page shows them arrive")
    sender = sub.add_parser("demo-sender", help="DEMO ONLY: a stand-in for the sending "
                            "service (make run): sends the retry requests at their "
                            "not_before as new sent events with retry_of, then receipts; "
                            "never beside a real sender")
    sender.add_argument("--receipt-delay", type=float, default=8.0, metavar="SECONDS",
                        help="seconds between a retry's sent event and its receipt")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    kafka = "Kafka"
    try:
        settings = load_settings(web_port=getattr(args, "web_port", None),
                                 log_level=getattr(args, "loglevel", None))
        kafka = f"Kafka at {settings.kafka_bootstrap}"
        if args.command in _ONE_SHOT:
            _quiet_libraries()
        if args.command in _KAFKA_CLIENTS:
            # a wrong password: one line and exit 4 now, not a client retrying for ever
            asyncio.run(check_credentials(settings))
        if settings.schema_registry_url:
            _use_registry(args.command, settings)
        handler = _COMMANDS[args.command]
        return handler(args, settings)
    except IncompatibleSchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPATIBLE
    except (ConfigurationError, StoreConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StateDirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STATE
    except KafkaError as exc:  # aiokafka's errors are neither OSError nor ours
        print(f"error: cannot use {kafka}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (OSError, TimeoutError, CampaignAnalyticsError, WriterUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


# Commands that answer and exit: a failure is their one line on stderr, not also the
# client libraries' own log records of it (aiokafka's "Unable connect", clickhouse-
# connect's "Unexpected Http Driver Exception", asyncio's "Unclosed AIOKafkaConsumer").
_ONE_SHOT = frozenset({"publish", "summary", "export", "sql", "generate", "demo", "retry",
                       "winner"})
_KAFKA_CLIENTS = frozenset({"worker", "sink", "publish", "summary", "demo", "api", "retry",
                            "demo-sender", "winner"})


# Commands that write a topic for others: each registers its schemas at start-up (the
# worker all of them, so it refuses to start on an incompatible one; the others the
# command topics they write).
_PRODUCERS = frozenset({"worker", "api", "retry", "winner"})


def _use_registry(command: str, settings: Settings) -> None:
    """Confluent-framed values are read through the registry; a producing command
    registers what it writes first (``IncompatibleSchemaError``: exit 7)."""
    from streams.codecs.registry import install, produced_topics, register_produced

    user, password = settings.schema_registry_login()
    client = install(settings.schema_registry_url, user=user, password=password,
                     cafile=settings.schema_registry_cafile)
    if command in _PRODUCERS:
        register_produced(client, produced_topics(settings, commands_only=command != "worker"))


class StateDirectoryError(CampaignAnalyticsError):
    """A directory of the local state (``CA_DATA_DIR``) cannot be created or written."""


def _check_state_dirs(*directories: Path) -> None:
    """Each directory exists (created if need be) and takes a file: written, synced,
    removed. A worker or sink that could not keep its state stops here in one line
    (exit 5), before it joins a group or owns the engine, instead of failing at its
    first write: a full disk or an unwritable (or not a) directory."""
    for directory in directories:
        probe = directory / f".write-probe-{os.getpid()}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with probe.open("wb") as out:
                out.write(bytes(4096))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            reason = "not a directory" if directory.exists() and not directory.is_dir() else (
                exc.strerror or str(exc))
            raise StateDirectoryError(
                f"the state directory {directory} cannot be written ({reason}); fix it "
                "(CA_DATA_DIR, CA_CHDB_PATH: permissions, free space) and start again"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()


def _state_dirs(settings: Settings, worker: bool) -> list[Path]:
    """What a worker (``worker``) or a sink process writes: the worker's own directory;
    beside the embedded engine, the sink lock (the engine's files are its own)."""
    dirs = [settings.worker_dir] if worker else []
    if not settings.clickhouse_url and (settings.sink_in_worker or not worker):
        dirs.append(settings.chdb_path.parent)
    return dirs


def _quiet_libraries() -> None:
    for name in ("aiokafka", "clickhouse_connect", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from faust import Worker

    from streams.app import create_app
    from streams.cli.admin import ensure_topics, wait_for_kafka
    from streams.codecs.prices import load_prices
    from streams.engine import Seat, harden_process

    logging.basicConfig(level=settings.log_level.upper())
    settings.clickhouse_login()  # a bad password file: exit 2 now, not a sink crash loop
    load_prices(settings.prices_file)  # a bad CA_PRICES_FILE: exit 2 now, one line
    _check_state_dirs(*_state_dirs(settings, worker=True))
    seat = Seat(settings.worker_dir, settings.app_id)
    seat.claim()  # held until the process exits
    asyncio.run(wait_for_kafka(settings.kafka_bootstrap,  # a broker still starting: wait
                               probe=metadata_probe(settings)))
    # the topics' replication follows the cluster met when the settings leave it empty
    settings = asyncio.run(ensure_topics(settings))
    # a SIGKILLed predecessor on this directory: its group seat is freed now, not
    # when its session times out (streams/engine/membership.py)
    asyncio.run(seat.evict_previous(settings.kafka_bootstrap,
                                    client_options=client_options(settings)))
    app = create_app(settings)  # hardened there (streams.engine.harden)
    harden_process(app.telemetry, settings.gc_gen0_threshold,  # type: ignore[attr-defined]
                   app=app, seat=seat)
    Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
    return EXIT_OK


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.publish import publish_lines

    source: TextIO
    if args.file == "-":
        source = sys.stdin
        report = asyncio.run(publish_lines(settings, source))
    else:
        path = Path(args.file)
        if not path.is_file():
            raise ConfigurationError(f"no such file: {path}")
        with path.open(encoding="utf-8") as source:
            report = asyncio.run(publish_lines(settings, source))
    print(f"published {report.published} event(s); rejected {len(report.rejected)} line(s)")
    for line_no, reason in report.rejected:
        print(f"  line {line_no}: {reason}", file=sys.stderr)
    return EXIT_REJECTED if report.rejected else EXIT_OK


def _summary(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.admin import latest_summaries

    summaries = asyncio.run(latest_summaries(settings))
    summary = summaries.get(args.campaign_id)
    if summary is None:
        print(f"error: no metrics for campaign {args.campaign_id!r} yet", file=sys.stderr)
        return EXIT_UNKNOWN
    summary.pop("emitted_at", None)
    if args.json:
        print(json.dumps(summary, sort_keys=False))
    else:
        print(format_summary(summary))
    return EXIT_OK


@contextlib.contextmanager
def _campaign_reader(settings: Settings, campaign_id: str) -> Iterator[Any]:
    """The store's reader (``open_reader``: the server, or the SQL endpoint of the
    embedded engine's owner), closed after; None, with the error said, for a campaign
    with no messages."""
    from sinks import Credentials, open_reader

    store = open_reader(settings.clickhouse_url, settings.clickhouse_database,
                        sql_host=settings.sql_host, sql_port=settings.sql_port,
                        credentials=Credentials(*settings.clickhouse_login()))
    try:
        if store.count_message_log(campaign_id) == 0:
            print(f"error: no messages for campaign {campaign_id!r}", file=sys.stderr)
            yield None
        else:
            yield store
    finally:
        store.close()


def _export(args: argparse.Namespace, settings: Settings) -> int:
    """Through ``open_reader``: the ClickHouse server, or the SQL endpoint of the process
    that owns the embedded engine. It changes nothing (no migration, no TTL)."""
    from sinks.export import write_csv, write_csv_file
    from streams.codecs.prices import load_prices

    if args.output != "-" and not Path(args.output).parent.is_dir():
        raise ConfigurationError(f"no such directory: {Path(args.output).parent}")
    prices = load_prices(settings.prices_file)  # the cost column; a bad file: exit 2
    with _campaign_reader(settings, args.campaign_id) as store:
        if store is None:
            return EXIT_UNKNOWN
        rows = store.iter_export_rows(args.campaign_id)
        try:
            if args.output == "-":
                count = write_csv(rows, sys.stdout, prices)
            else:
                count = write_csv_file(rows, Path(args.output), prices)
        finally:
            rows.close()
    print(f"exported {count} message(s) to {args.output}", file=sys.stderr)
    return EXIT_OK


def _requester() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name for this uid (a bare container)
        return f"cli:uid-{os.getuid()}"


def _winner(args: argparse.Namespace, settings: Settings) -> int:
    """One winner decision (streams/api/winner.py); the record as JSON on stdout."""
    from projections.ab import ab_statistics, first_attempt_counts
    from projections.winner import WinnerRefusedError, WinnerRequestError
    from streams.api.app import ab_config
    from streams.api.timefmt import iso
    from streams.api.winner import WinnerDecidedError, decide_winner, decision_body
    from streams.cli.admin import latest_summaries

    config = ab_config(settings)
    summary = asyncio.run(latest_summaries(settings)).get(args.campaign_id)
    if summary is None:
        print(f"error: no metrics for campaign {args.campaign_id!r} yet", file=sys.stderr)
        return EXIT_UNKNOWN

    def statistics() -> tuple[dict[str, Any], str]:
        ab = ab_statistics(first_attempt_counts(summary["variants"]), config)
        as_of = iso(summary["emitted_at"]) or ""
        return {"campaign_id": args.campaign_id, "as_of": as_of, **ab}, as_of

    try:
        record = asyncio.run(decide_winner(
            settings, args.campaign_id, statistics, variant=args.variant,
            reason=args.reason, force=args.force, requested_by=_requester()))
    except WinnerRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WinnerRefusedError as exc:
        print(f"error: refused: {exc}", file=sys.stderr)
        return EXIT_CONFLICT
    except WinnerDecidedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps(decision_body(exc.decision)))
        return EXIT_CONFLICT
    print(json.dumps(decision_body(record)))
    return EXIT_OK


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    """One retry round (streams/api/retries.py); the counts on stdout, one per line."""
    from sinks.retry_reads import read_retry_inputs
    from streams.api.retries import RetryConflictError, quiet_hours, request_retries

    quiet_hours(settings)  # a bad CA_QUIET_HOURS: exit 2 before anything is read
    with _campaign_reader(settings, args.campaign_id) as store:
        if store is None:
            return EXIT_UNKNOWN

        async def inputs() -> Any:
            return await asyncio.to_thread(read_retry_inputs, store, args.campaign_id)

        try:
            answer = asyncio.run(request_retries(
                settings, args.campaign_id, inputs, dry_run=args.dry_run, reason=args.reason,
                requested_by=_requester(), request_id=args.request_id))
        except RetryConflictError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_CONFLICT
    counts = answer.counts
    print(f"requested {counts['requested']}")
    print(f"scheduled_later {counts['scheduled_later']}")
    for reason, count in counts["skipped"].items():
        print(f"skipped_{reason} {count}")
    print(f"placed_by_default_zone {counts['placed_by_default_zone']}")
    if answer.dry_run:
        print("dry run: nothing was requested", file=sys.stderr)
    elif answer.repeated:
        print(f"request {answer.request_id} was answered before (round {answer.round_id}): "
              "nothing new was requested", file=sys.stderr)
    return EXIT_OK


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.demo import generate_campaign

    events = generate_campaign(args.campaign_id, args.messages, seed=args.seed)
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return EXIT_OK


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from streams.api.server import serve
    from streams.engine import log_repeats

    logging.basicConfig(level=settings.log_level.upper())
    log_repeats.install()  # its live reader's warnings while a broker is away
    port = settings.api_port if args.port is None else args.port
    try:
        asyncio.run(serve(settings, port))
    except OSError as exc:  # the port is taken, or the host is not ours
        print(f"error: cannot serve the API on {settings.api_host}:{port}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.cli.demo_run import run_demo

    return asyncio.run(run_demo(settings, args.campaign_id, args.messages,
                                args.interval, args.once, args.spread))


def _demo_sender(args: argparse.Namespace, settings: Settings) -> int:
    """Demo only (streams/cli/demo_sender.py): runs until interrupted."""
    from streams.cli.demo_sender import DemoSender

    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s demo-sender %(message)s")
    _quiet_libraries()
    asyncio.run(DemoSender(settings, args.receipt_delay).run())
    return EXIT_OK


def _sink(args: argparse.Namespace, settings: Settings) -> int:
    """The sinks alone; with ``--parent-pid`` and ``--port-fd``, as a worker's child
    (streams/sink_runtime/process.py): metrics on a free port told to the worker, and gone
    when the worker is."""
    from prometheus_client import start_http_server

    from streams.engine import harden_process
    from streams.sink_runtime import process as sink_process
    from streams.sink_runtime.runner import run_sinks
    from streams.telemetry import Telemetry

    logging.basicConfig(level=settings.log_level.upper())
    settings.clickhouse_login()  # a bad password file: exit 2 now
    if args.parent_pid is None:  # a worker's child: the worker checked; it retries, logged
        _check_state_dirs(*_state_dirs(settings, worker=False))
    telemetry = Telemetry()
    if args.parent_pid is not None:
        sink_process.die_with_parent(args.parent_pid)
    if args.port_fd is not None:
        sink_process.serve_metrics(telemetry.registry, args.port_fd)
    elif args.metrics_port is not None:
        start_http_server(args.metrics_port, addr=settings.web_host, registry=telemetry.registry)
    harden_process(telemetry, settings.gc_gen0_threshold)

    async def run() -> None:
        sinks = asyncio.ensure_future(run_sinks(settings, telemetry))
        # SIGTERM (a supervisor, or the kernel when the worker dies) stops the sinks
        # cleanly: their consumers leave their groups, so the next sinks join at once
        # instead of after the session timeout
        terminated = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminated.set)
        stops: list[asyncio.Future[Any]] = [asyncio.ensure_future(terminated.wait())]
        if args.parent_pid is not None:
            stops.append(asyncio.ensure_future(sink_process.watch_parent(args.parent_pid)))
        try:
            await asyncio.wait([sinks, *stops], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in stops:
                task.cancel()
        if not sinks.done():
            sinks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sinks
            return
        await sinks  # ended by itself: its error, if any, is the command's

    asyncio.run(run())
    return EXIT_OK


def _sql(args: argparse.Namespace, settings: Settings) -> int:
    """One query through clickhouse-connect; a ClickHouse error is one line, exit 2."""
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

    from sinks import Credentials

    if settings.clickhouse_url:
        dsn, where, hint = settings.clickhouse_url, _url_origin(settings.clickhouse_url), ""
    else:
        dsn = where = f"http://{settings.sql_host}:{settings.sql_port}"
        hint = ": is a worker (its sink process) running?"
    credentials = Credentials(*settings.clickhouse_login())
    try:
        client = clickhouse_connect.get_client(
            dsn=dsn, database=settings.clickhouse_database, connect_timeout=5,
            autogenerate_session_id=False, show_clickhouse_errors="scrub",
            **credentials.client_options(),
        )
        try:
            result = client.query(args.query)
        finally:
            client.close()
    except ClickHouseError as exc:
        code = getattr(exc, "code", None)
        if isinstance(exc, DatabaseError) and code is not None and code != 202:
            print(f"error: {credentials.scrub(_clickhouse_message(str(exc)))}", file=sys.stderr)
            return EXIT_USAGE
        # no answer, or 202 TOO_MANY_SIMULTANEOUS_QUERIES: try again later
        detail = credentials.scrub(_clickhouse_message(str(exc))) if code is not None else (
            "no answer")
        print(f"error: cannot query ClickHouse SQL at {where} ({detail}){hint}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    names = list(result.column_names)
    rows = [list(row) for row in result.result_rows]
    if args.format == "json":
        print(json.dumps([dict(zip(names, row, strict=True)) for row in rows],
                         default=_json_value, ensure_ascii=False))
    elif args.format == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([["" if v is None else _text_value(v) for v in row] for row in rows])
    else:
        cells = [[_text_value(v).replace("\n", "\\n") for v in row] for row in rows]
        widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
        # numbers right-aligned, as ClickHouse's own pretty formats do
        numeric = [bool(rows) and all(isinstance(r[i], (int, float)) or r[i] is None
                                      for r in rows) for i in range(len(names))]
        for line in [names, ["-" * w for w in widths], *cells]:
            print("  ".join(c.rjust(w) if num else c.ljust(w)
                            for c, w, num in zip(line, widths, numeric, strict=True)).rstrip())
    return EXIT_OK


def _clickhouse_message(text: str) -> str:
    """ClickHouse's own message out of clickhouse-connect's, on one line."""
    _, found, message = text.partition("server response: ")
    return " ".join((message if found else text).split())


def _url_origin(url: str) -> str:
    """scheme://host:port of ``url``: never its password."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "CA_CLICKHOUSE_URL"


def _text_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _json_value(value: object) -> object:
    """JSON for what clickhouse-connect returns beyond JSON's types (dates, Decimal, UUID...)."""
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return _text_value(value)


_COMMANDS = {
    "worker": _worker,
    "sink": _sink,
    "publish": _publish,
    "summary": _summary,
    "export": _export,
    "generate": _generate,
    "retry": _retry,
    "winner": _winner,
    "demo": _demo,
    "demo-sender": _demo_sender,
    "sql": _sql,
    "api": _api,
}

if __name__ == "__main__":
    raise SystemExit(main())
