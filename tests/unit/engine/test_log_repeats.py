"""Kafka clients' repeated warnings: once per window, with a count of the rest."""

from __future__ import annotations

import logging
import uuid

from streams.engine import log_repeats
from streams.engine.log_repeats import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.ERROR,
           name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_template_goes_out_once_per_window_and_then_says_how_many_were_left_out() -> None:
    clock = Clock()
    quiet = RepeatFilter(window=10, clock=clock)
    passed = []
    for i in range(100):  # a connection refused every 0.1 s, to changing ports
        clock.now = i * 0.1
        r = record("Unable connect to node with id %s: %s", 1, f"port {9000 + i}")
        if quiet.filter(r):
            passed.append(r.getMessage())
    clock.now = 10.0
    r = record("Unable connect to node with id %s: %s", 1, "port 1")
    assert quiet.filter(r)
    passed.append(r.getMessage())
    assert passed == ["Unable connect to node with id 1: port 9000",
                      "Unable connect to node with id 1: port 1 "
                      "(99 more like this in the 10 s before)"]


def test_other_templates_loggers_and_levels_are_their_own() -> None:
    quiet = RepeatFilter(window=10, clock=Clock())
    assert quiet.filter(record("a %s", 1))
    assert quiet.filter(record("b %s", 1))  # another template
    assert quiet.filter(record("a %s", 1, name="aiokafka.client"))  # another logger
    assert not quiet.filter(record("a %s", 2))
    for _ in range(3):  # debug and info are never held back
        assert quiet.filter(record("a %s", 1, level=logging.INFO))
        assert quiet.filter(record("a %s", 1, level=logging.DEBUG))


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def count_passed(logger: logging.Logger, template: str, times: int) -> int:
    """How many of ``times`` errors with ``template`` reach a handler on ``logger``
    (its level set here: other tests or Faust may have raised its parents')."""
    collect, level = Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.DEBUG)
    try:
        for _ in range(times):
            logger.error(template, 1, "NodeNotReadyError")
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    return len(collect.records)


def test_installed_on_every_aiokafka_logger_it_holds_back_their_repeats() -> None:
    installed = log_repeats.install()
    try:
        assert log_repeats.install() is installed  # idempotent
        fetcher = logging.getLogger("aiokafka.consumer.fetcher")
        assert installed in fetcher.filters
        assert installed in logging.getLogger("aiokafka").filters
        template = f"Failed fetch messages from %s: %s ({uuid.uuid4()})"  # new to the filter
        assert count_passed(fetcher, template, 50) == 1
        # control: a logger of another library is left alone
        assert count_passed(logging.getLogger("faust.transport"), template, 50) == 50
    finally:  # other tests see aiokafka's loggers as they were
        for name in list(logging.root.manager.loggerDict):
            if name == "aiokafka" or name.startswith("aiokafka."):
                logging.getLogger(name).removeFilter(installed)
