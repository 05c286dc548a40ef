"""The state directory unwritable or full (issue 19 item 3f), without root's help:
a path under a regular file is not a directory for root either, and a full disk is
an ``OSError(ENOSPC)`` from a patched write.

The worker and ``sink`` stop at once with one line and exit 5; a worker's sink child
and the stores wait, with the reason logged, and go on once it is fixed; a full
disk is never a row "refused for good" (which would be dead-lettered).
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
from pathlib import Path

import pytest

from sinks.chdb_store import ChdbStore
from sinks.errors import SinkError, retry_after_for
from streams import cli
from streams.settings import settings_of
from streams.sink_runtime import runner
from tests.unit.sink_runtime.test_refused_rows import TP, FakeStore, flush, records

cli_main = importlib.import_module("streams.cli.main")  # the package re-exports main()

# How chdb 4.4 words a full disk and an unwritable directory (ClickHouse's formats).
ENOSPC_WRITE = ("Code: 75. DB::Exception: Cannot write to file /s/store/0a/tmp_insert_1/data.bin"
                ", errno: 28, strerror: No space left on device. "
                "(CANNOT_WRITE_TO_FILE_DESCRIPTOR)")
ENOSPC_RESERVE = ("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. "
                  "(NOT_ENOUGH_SPACE)")
EACCES = ("Code: 477. DB::Exception: Cannot create directory /s/store/0a/tmp_insert_1, "
          "errno: 13, strerror: Permission denied. (CANNOT_CREATE_DIRECTORY)")


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path under a regular file: mkdir fails with ENOTDIR, root or not."""
    (tmp_path / "file").write_text("not a directory")
    return tmp_path / "file" / "state"


def one_line_exit_5(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert cli.main(argv) == cli_main.EXIT_STATE == 5
    err = capsys.readouterr().err
    assert err.startswith("error: the state directory ") and err.count("\n") == 1
    assert "Traceback" not in err and "start again" in err
    return err


def test_worker_and_sink_stop_in_one_line_with_exit_5(
        blocked: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CA_CLICKHOUSE_URL", raising=False)
    monkeypatch.setenv("CA_DATA_DIR", str(blocked))
    assert "(Not a directory)" in one_line_exit_5(capsys, ["worker"])
    assert "(Not a directory)" in one_line_exit_5(capsys, ["sink"])
    monkeypatch.setenv("CA_DATA_DIR", str(blocked.parent))  # the regular file itself
    assert "(not a directory)" in one_line_exit_5(capsys, ["sink"])


def test_a_full_disk_stops_them_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli_main.os, "fsync", full)
    monkeypatch.setenv("CA_DATA_DIR", str(tmp_path / "state"))
    assert "(No space left on device)" in one_line_exit_5(capsys, ["sink"])
    assert list((tmp_path / "state").iterdir()) == []  # the probe is gone


def test_negative_control_a_writable_directory_passes(tmp_path: Path) -> None:
    settings = settings_of({"CA_DATA_DIR": str(tmp_path / "state"), "CA_CLICKHOUSE_URL": "",
                            "CA_SINK_IN_WORKER": "1"})
    dirs = cli_main._state_dirs(settings, worker=True)
    assert dirs == [settings.worker_dir, settings.chdb_path.parent]
    cli_main._check_state_dirs(*dirs)
    assert [p.name for p in (tmp_path / "state").iterdir()] == [settings.worker_dir.name]
    assert list(settings.worker_dir.iterdir()) == []


def test_a_full_or_unwritable_store_is_transient_not_a_refusal() -> None:
    for message in (ENOSPC_WRITE, ENOSPC_RESERVE, EACCES):
        assert retry_after_for(message) is not None, message
    # negative control: a refusal that merely quotes such words stays a refusal
    quoted = ("Code: 6. DB::Exception: Cannot parse string 'No space left on device' as "
              "UInt32. (CANNOT_PARSE_TEXT)")
    assert retry_after_for(quoted) is None


class FullDiskStore(FakeStore):
    """A disk that is full for the first ``full`` inserts, as chdb reports it."""

    def __init__(self, full: int) -> None:
        super().__init__()
        self.full = full

    def insert(self, plan: object) -> int:
        if self.full:
            self.full -= 1
            raise SinkError(f"chdb insert failed: {ENOSPC_WRITE}", retry_after_for(ENOSPC_WRITE))
        return super().insert(plan)  # type: ignore[arg-type]


def test_a_sink_waits_out_a_full_disk_and_writes_each_row_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep

    async def no_wait(seconds: float) -> None:  # the backoff is not what is tested
        await real_sleep(0)

    monkeypatch.setattr(runner.asyncio, "sleep", no_wait)
    store = FullDiskStore(full=3)
    _, consumer, producer, telemetry = flush(store, records(5))
    assert producer.sent == []  # nothing dead-lettered
    assert sorted(store.rows) == sorted([(f"k{i}", 10 + i) for i in range(5)]
                                        + [("k0", 10), ("k1", 11)])
    assert telemetry.registry.get_sample_value("campaign_analytics_sink_errors_total") == 3
    assert consumer.commits[-1] == {TP: (15, "")}


def test_chdb_store_on_an_unusable_path_is_transient(blocked: Path) -> None:
    store = ChdbStore(blocked / "chdb", "campaign_analytics")
    with pytest.raises(SinkError, match="cannot create the chdb directory") as caught:
        store.migrate()
    assert caught.value.retry_after is not None


def test_the_sink_lock_waits_for_a_fixed_directory(
        blocked: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    waits: list[float] = []

    async def fix_on_first_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # fixed: the file gives way to a directory
            blocked.parent.unlink()
            blocked.parent.mkdir()

    monkeypatch.setattr(runner.asyncio, "sleep", fix_on_first_wait)
    with caplog.at_level(logging.ERROR, logger=runner.__name__):
        handle = asyncio.run(runner._take_flock(blocked / "chdb.sink.lock"))
    handle.close()
    assert waits == [2.0, 4.0]
    assert len(caplog.records) == 2
    assert "fix the state directory" in caplog.records[0].getMessage()
