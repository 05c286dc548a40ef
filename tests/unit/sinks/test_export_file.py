"""An export is all or nothing: ``write_csv_file`` renames a complete temporary file
onto the target, and ``campaign-analytics export`` whose store fails halfway leaves
no file (and an earlier export as it was)."""

from __future__ import annotations

import os
import stat
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from projections.message_log import CSV_EXPORT_COLUMNS
from sinks.errors import SinkError
from sinks.export import write_csv, write_csv_file
from streams.cli import main

ROW: tuple[object, ...] = ("Zoë", "+15550000001", "A", "delivered", 1_714_564_800_123,
                           1_714_564_860_000, None, None, 1, "US", None, 2)  # 2 segments
assert len(ROW) == len(CSV_EXPORT_COLUMNS)


def rows(n: int, fail_after: int | None = None) -> Iterator[tuple[object, ...]]:
    for i in range(n):
        if fail_after is not None and i == fail_after:
            raise SinkError("ClickHouse export failed at http://127.0.0.1:1: gone")
        yield ROW


def test_a_complete_export_replaces_the_target_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("an earlier export")
    assert write_csv_file(rows(3), target) == 3
    assert target.read_bytes().count(b"\r\n") == 4  # header and 3 rows
    assert os.listdir(tmp_path) == ["out.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # as open(path, "w")


def test_a_failing_export_leaves_no_file_and_the_earlier_one_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(SinkError):
        write_csv_file(rows(5000, fail_after=4000), target)
    assert os.listdir(tmp_path) == []
    target.write_text("an earlier export")
    with pytest.raises(SinkError):
        write_csv_file(rows(5000, fail_after=4000), target)
    assert os.listdir(tmp_path) == ["out.csv"]
    assert target.read_text() == "an earlier export"


def test_negative_control_writing_in_place_leaves_a_partial_file(tmp_path: Path) -> None:
    """What export did before: the checks above would see this file."""
    target = tmp_path / "out.csv"
    with pytest.raises(SinkError), target.open("w", newline="") as out:
        write_csv(rows(5000, fail_after=4000), out)
    assert os.listdir(tmp_path) == ["out.csv"] and target.stat().st_size > 0


class FailingStore:
    """A reader that knows the campaign, then stops answering halfway through it."""

    def __init__(self, fail_after: int | None) -> None:
        self.fail_after = fail_after
        self.closed = False

    def count_message_log(self, campaign_id: str, final: bool = True) -> int:
        return 5000

    def iter_export_rows(self, campaign_id: str) -> Generator[tuple[object, ...], None, None]:
        yield from rows(5000, self.fail_after)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("fail_after", [4000, None])
def test_the_cli_export_with_a_failing_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        fail_after: int | None) -> None:
    store = FailingStore(fail_after)
    monkeypatch.setattr("sinks.open_reader", lambda *args, **kwargs: store)
    target = tmp_path / "out.csv"

    code = main(["export", "camp", "--output", str(target)])

    err = capsys.readouterr().err
    assert store.closed
    if fail_after is None:  # the control: the same export completes
        assert code == 0 and target.exists()
        assert os.listdir(tmp_path) == ["out.csv"]
        return
    assert code == 4
    assert err.splitlines() == ["error: ClickHouse export failed at http://127.0.0.1:1: gone"]
    assert os.listdir(tmp_path) == []
