"""The S3 file import reader (chalicelib/providers/s3_files/) against moto, in-process.

Like tests/providers/test_s3_provider.py: moto's in-process backends are the ones the
session-wide moto server serves, so the mock starts with reset=False / stops with
remove_data=False, buckets have unique names and every test deletes its own.

Steps run as the engine runs them: the cursor goes through JSON between steps, the state
of a finished run is handed to the next run.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib import config
from chalicelib.providers import calls
from chalicelib.providers.base import ProviderError
from chalicelib.providers.calls import CallCounter
from chalicelib.providers.registry import Registry
from chalicelib.providers.roles import ReadResult, StepContext
from chalicelib.providers.s3 import PROVIDER, AccessKeys
from chalicelib.providers.s3_files import S3FileReader
from chalicelib.providers.s3_files.state import NextState, Seen, object_digest

CREDS = AccessKeys.model_validate(
    {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
)
CURSOR_LIMIT = 100_000


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_PROFILE",
                 "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config.reset()
    calls.reset()
    mock = mock_aws()
    mock.start(reset=False)
    try:
        yield
    finally:
        mock.stop(remove_data=False)
        config.reset()
        calls.reset()


@pytest.fixture
def s3(aws: None) -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"sy-reader-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def sent(aws: None) -> list[tuple[str, str | None]]:
    """(operation, Range header) of every S3 request provider clients send from now on:
    handlers on the shared session are copied into each client it creates."""
    seen: list[tuple[str, str | None]] = []

    def record(request: Any, event_name: str, **kw: Any) -> None:
        rng = request.headers.get("Range")
        seen.append((event_name.rsplit(".", 1)[-1], rng.decode() if isinstance(rng, bytes) else rng))

    calls.shared_session().events.register("before-send.s3", record)
    return seen


# --- helpers -------------------------------------------------------------------------------


def put(s3: Any, bucket: str, key: str, body: bytes | str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def context(
    cfg: dict[str, Any],
    cursor: dict[str, Any] | None = None,
    *,
    state: dict[str, Any] | None = None,
    max_records: int = 1000,
    deadline: float | None = None,
    counter: CallCounter | None = None,
    step: int = 0,
) -> StepContext:
    return StepContext(
        account_id="acc_1", job_id="job_1", run_id="run_1", step=step, method="access_keys",
        credentials=CREDS, config=cfg, cursor=cursor, state=state or {}, max_records=max_records,
        deadline=time.monotonic() + 60 if deadline is None else deadline, counter=counter,
    )


@dataclass
class Run:
    results: list[ReadResult] = field(default_factory=list)
    cursors: list[dict[str, Any]] = field(default_factory=list)  # as stored: JSON round trip

    @property
    def rows(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.ref, r.data) for res in self.results for r in res.rows]

    @property
    def data(self) -> list[dict[str, Any]]:
        return [d for _, d in self.rows]

    @property
    def invalid(self) -> list[tuple[str, str]]:
        return [i for res in self.results for i in res.invalid]

    @property
    def last(self) -> ReadResult:
        return self.results[-1]


def run_all(
    cfg: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    max_records: int = 1000,
    reader: Any = None,
    counter: CallCounter | None = None,
    deadline: Callable[[], float] | None = None,
    between: Callable[[int], None] | None = None,
    max_steps: int = 2_000,
) -> Run:
    """Steps until done, the cursor stored as JSON between them, like the engine."""
    reader = reader or Registry().source("amazon_s3", "s3_file_import")
    run = Run()
    cursor: dict[str, Any] | None = None
    for n in range(max_steps):
        if between is not None:
            between(n)
        ctx = context(cfg, cursor, state=state, max_records=max_records, counter=counter, step=n,
                      deadline=deadline() if deadline else None)
        result = reader.read(ctx)
        text = json.dumps(result.cursor, sort_keys=True)
        assert len(text.encode()) < CURSOR_LIMIT
        cursor = json.loads(text)
        run.results.append(result)
        run.cursors.append(cursor)
        if result.done:
            return run
    raise AssertionError("the run never finished")


def parse_csv(text: str, delimiter: str = ",") -> list[dict[str, str]]:
    """An independent reference: the whole text through csv.DictReader."""
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delimiter))


def profile_csv(n: int, start: int = 0) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["email", "first_name", "last_name", "phone", "city", "signed_up", "note"])
    for i in range(start, start + n):
        note = ["", "likes, commas", 'said "hi"', "two\nlines", "plain"][i % 5]
        w.writerow([f"user{i:06d}@example.com", f"First{i}", f"Last{i % 97}", f"+1555{i:07d}",
                    ["Lisbon", "Oslo", "Quito"][i % 3], f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}", note])
    return out.getvalue()


TRICKY_CSV = (
    "\ufeffemail,name,note\r\n"
    'ann@example.com,"Smith, Ann","she said ""hi"""\r\n'
    'bob@example.com,Bob,"line one\r\nline two, still the note"\r\n'
    "\r\n"
    "cy@example.com,Cy,\r\n"
)


# --- CSV -----------------------------------------------------------------------------------


def test_csv_quotes_commas_newlines_bom_and_crlf(s3: Any, bucket: str) -> None:
    # GIVEN a CSV with a BOM, CRLF line ends, a quoted comma, doubled quotes, a quoted
    # newline and a blank line
    put(s3, bucket, "in/people.csv", TRICKY_CSV)

    # WHEN the file is imported
    run = run_all({"bucket": bucket, "prefix": "in/"})

    # THEN each record is one row, keyed by the header (no BOM in the first column name),
    # its ref is the line it starts on, and the run is done in one step
    base = f"s3://{bucket}/in/people.csv"
    assert run.rows == [
        (f"{base}#2", {"email": "ann@example.com", "name": "Smith, Ann", "note": 'she said "hi"'}),
        (f"{base}#3", {"email": "bob@example.com", "name": "Bob",
                       "note": "line one\r\nline two, still the note"}),
        (f"{base}#6", {"email": "cy@example.com", "name": "Cy", "note": ""}),
    ]
    assert run.data == parse_csv(TRICKY_CSV)
    assert run.invalid == []
    assert len(run.results) == 1
    assert run.last.processed == 3
    assert run.last.total == len(TRICKY_CSV.encode()) == run.last.cursor["bytes_read"]
    assert run.last.total_unit == "bytes"


def test_csv_other_delimiter(s3: Any, bucket: str) -> None:
    # GIVEN a semicolon-separated file with a quoted semicolon
    put(s3, bucket, "x.csv", 'email;city\na@example.com;"Oslo; Norway"\n')

    # WHEN it is imported with csv_delimiter ";"
    run = run_all({"bucket": bucket, "csv_delimiter": ";"})

    # THEN the quoted delimiter stays inside its field
    assert run.data == [{"email": "a@example.com", "city": "Oslo; Norway"}]


def test_csv_rows_that_do_not_fit_the_header_are_invalid(s3: Any, bucket: str) -> None:
    # GIVEN rows with too few and too many fields, a malformed quote and a non-UTF-8 row
    body = (
        b"email,name\n"
        b"a@example.com,Ann\n"
        b"b@example.com\n"
        b"c@example.com,Cy,extra\n"
        b'd@example.com,"Di"x\n'
        b"e@example.com,\xe9mile\n"
        b"f@example.com,Fay\n"
    )
    put(s3, bucket, "in/p.csv", body)

    # WHEN the file is imported
    run = run_all({"bucket": bucket, "prefix": "in/"})

    # THEN the good rows are read and every bad one is reported with its line and reason
    base = f"s3://{bucket}/in/p.csv"
    assert run.data == [{"email": "a@example.com", "name": "Ann"}, {"email": "f@example.com", "name": "Fay"}]
    assert run.invalid[0] == (f"{base}#3", "expected 2 fields, found 1")
    assert run.invalid[1] == (f"{base}#4", "expected 2 fields, found 3")
    assert run.invalid[2][0] == f"{base}#5"
    assert run.invalid[2][1].startswith("malformed CSV")
    assert run.invalid[3] == (f"{base}#6", "not UTF-8 text")
    assert len(run.invalid) == 4


def test_csv_header_that_repeats_a_column_skips_the_file(s3: Any, bucket: str) -> None:
    # GIVEN a file whose header names a column twice, and a good file
    put(s3, bucket, "a.csv", "email,email\nx@example.com,y@example.com\n")
    put(s3, bucket, "b.csv", "email\nz@example.com\n")

    # WHEN both are imported
    run = run_all({"bucket": bucket})

    # THEN the first is reported once, as a whole, and the second is read
    assert run.invalid == [(f"s3://{bucket}/a.csv", "the CSV header repeats a column: email")]
    assert run.data == [{"email": "z@example.com"}]


# --- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_reports_lines_that_are_not_objects(s3: Any, bucket: str) -> None:
    # GIVEN JSON Lines with a broken line, an array, a string, a blank line and CRLF
    body = (
        '{"email": "a@example.com", "age": 31}\r\n'
        "{not json}\n"
        "[1, 2]\n"
        '"text"\n'
        "\n"
        '{"email": "b@example.com", "tags": ["x"]}'  # no newline at the end
    )
    put(s3, bucket, "in/p.jsonl", "\ufeff" + body)

    # WHEN it is imported
    run = run_all({"bucket": bucket, "prefix": "in/", "format": "jsonl"})

    # THEN objects are rows, each bad line is reported with its line number and skipped
    base = f"s3://{bucket}/in/p.jsonl"
    assert run.rows == [
        (f"{base}#1", {"email": "a@example.com", "age": 31}),
        (f"{base}#6", {"email": "b@example.com", "tags": ["x"]}),
    ]
    assert [ref for ref, _ in run.invalid] == [f"{base}#2", f"{base}#3", f"{base}#4"]
    assert run.invalid[0][1].startswith("not valid JSON")
    assert run.invalid[1][1] == "not a JSON object (a JSON array)"
    assert run.invalid[2][1] == "not a JSON object (a JSON string)"
    assert run.last.processed == 2


def test_a_line_over_one_mib_is_skipped_without_keeping_it(s3: Any, bucket: str) -> None:
    # GIVEN a 1.5 MB line between two good lines
    body = '{"email": "a@example.com"}\n{"blob": "' + "x" * 1_500_000 + '"}\n{"email": "b@example.com"}\n'
    put(s3, bucket, "big.jsonl", body)

    # WHEN it is imported
    run = run_all({"bucket": bucket, "format": "jsonl"})

    # THEN the long line is reported and the reader carries on after it
    assert run.data == [{"email": "a@example.com"}, {"email": "b@example.com"}]
    assert run.invalid == [(f"s3://{bucket}/big.jsonl#2", "line longer than 1 MiB")]


# --- gzip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_gzip_files_are_read_by_their_suffix(s3: Any, bucket: str, fmt: str) -> None:
    # GIVEN a gzip file (two concatenated gzip members) and a plain one
    if fmt == "csv":
        first, second = "email,name\na@example.com,Ann\n", "b@example.com,Bob\n"
        plain = "email,name\nc@example.com,Cy\n"
    else:
        first, second = '{"email": "a@example.com"}\n', '{"email": "b@example.com"}\n'
        plain = '{"email": "c@example.com"}\n'
    put(s3, bucket, f"in/a.{fmt}.gz", gzip.compress(first.encode()) + gzip.compress(second.encode()))
    put(s3, bucket, f"in/b.{fmt}", plain)

    # WHEN they are imported with compression "auto" (the default), one row per step
    run = run_all({"bucket": bucket, "prefix": "in/", "format": fmt}, max_records=1)

    # THEN the gzip one is decompressed, the plain one is read as it is
    assert [d["email"] for d in run.data] == ["a@example.com", "b@example.com", "c@example.com"]
    assert run.invalid == []
    assert run.rows[1][0] == f"s3://{bucket}/in/a.{fmt}.gz#{3 if fmt == 'csv' else 2}"


def test_compression_gzip_reads_keys_without_the_suffix(s3: Any, bucket: str) -> None:
    # GIVEN gzip data under a key without .gz
    put(s3, bucket, "export.csv", gzip.compress(b"email\na@example.com\n"))

    # WHEN imported with compression "gzip"
    run = run_all({"bucket": bucket, "compression": "gzip"})

    # THEN it is decompressed
    assert run.data == [{"email": "a@example.com"}]


def test_a_truncated_gzip_file_is_reported(s3: Any, bucket: str) -> None:
    # GIVEN a gzip file cut short
    data = gzip.compress(profile_csv(50).encode())
    put(s3, bucket, "cut.csv.gz", data[: len(data) // 2])

    # WHEN it is imported
    run = run_all({"bucket": bucket})

    # THEN the run finishes and says the file is truncated
    assert run.last.done
    assert (f"s3://{bucket}/cut.csv.gz", "the gzip file is truncated") in run.invalid


# --- listing -------------------------------------------------------------------------------


def test_objects_under_the_prefix_in_key_order(s3: Any, bucket: str) -> None:
    # GIVEN files under a prefix (one in a sub-folder), a folder marker, an empty object
    # and a file outside the prefix
    put(s3, bucket, "in/b.csv", "email\nb@example.com\n")
    put(s3, bucket, "in/a.csv", "email\na@example.com\n")
    put(s3, bucket, "in/sub/c.csv", "email\nc@example.com\n")
    put(s3, bucket, "in/sub/", b"")
    put(s3, bucket, "in/empty.csv", b"")
    put(s3, bucket, "out/z.csv", "email\nz@example.com\n")

    # WHEN the prefix is imported
    run = run_all({"bucket": bucket, "prefix": "in/"})

    # THEN every file under it is read once, in key order; total is their bytes
    assert [d["email"] for d in run.data] == ["a@example.com", "b@example.com", "c@example.com"]
    assert run.last.total == 3 * len("email\na@example.com\n")
    assert run.results[0].cursor["objects"] == 3


def test_the_plan_is_paged_when_it_does_not_fit_the_cursor(s3: Any, bucket: str) -> None:
    # GIVEN 12 files, of which the last run imported two, and a reader whose plan page
    # holds about 2 objects
    for i in range(12):
        put(s3, bucket, f"in/f{i:02d}.csv", f"email\nu{i}@example.com\n")
    state = run_all({"bucket": bucket, "prefix": "in/f0"}).last.state  # f00..f09 imported
    put(s3, bucket, "in/f03.csv", "email\nchanged@example.com\n")
    reader = S3FileReader(PROVIDER, plan_page_bytes=150)

    # WHEN the prefix is imported incrementally, two rows a step
    run = run_all({"bucket": bucket, "prefix": "in/"}, state=state, reader=reader, max_records=2)

    # THEN the plan went page by page (listed again after `more_after`) and still holds
    # exactly the new and changed files, in key order
    assert any(c["more_after"] for c in run.cursors)
    assert max(len(c["plan"]) for c in run.cursors) <= 2
    assert [d["email"] for d in run.data] == ["changed@example.com", "u10@example.com", "u11@example.com"]
    assert run.results[0].cursor["objects"] == 3


def test_the_cursor_stays_under_100_kb_with_many_objects(s3: Any, bucket: str) -> None:
    # GIVEN 400 files with long keys (their plan alone would be ~50 KB)
    names = [f"imports/2024/06/01/customer-segment-{'x' * 40}-{i:04d}.jsonl" for i in range(400)]
    for name in names:
        put(s3, bucket, name, '{"n": 1}\n')

    # WHEN they are all imported with the default reader, 50 rows a step
    run = run_all({"bucket": bucket, "prefix": "imports/", "format": "jsonl"}, max_records=50)

    # THEN every cursor stayed under the limit (run_all checks), the plan was paged, and
    # every file was read once, in order
    assert [ref.split("#")[0] for ref, _ in run.rows] == [f"s3://{bucket}/{n}" for n in names]
    assert any(c["more_after"] for c in run.cursors)
    assert max(len(json.dumps(c)) for c in run.cursors) > 15_000  # the budget was used
    assert run.last.state["count"] == 400


# --- steps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_steps_of_n_rows_reassemble_the_whole_file_list(s3: Any, bucket: str, n: int) -> None:
    # GIVEN plain and gzip CSV files with multi-line records
    texts = {"in/a.csv": profile_csv(60), "in/b.csv.gz": profile_csv(45, 100), "in/c.csv": TRICKY_CSV}
    for key, text in texts.items():
        put(s3, bucket, key, gzip.compress(text.encode()) if key.endswith(".gz") else text)
    expected = [row for key in sorted(texts) for row in parse_csv(texts[key])]

    # WHEN they are read in steps of n rows
    run = run_all({"bucket": bucket, "prefix": "in/"}, max_records=n)

    # THEN the steps give back exactly the rows of the files, in order, none twice
    assert run.data == expected
    assert len({ref for ref, _ in run.rows}) == len(expected)
    assert all(len(r.rows) <= n for r in run.results)
    assert run.last.processed == len(expected)
    assert run.last.cursor["bytes_read"] == run.last.total == sum(
        s3.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in texts
    )


def test_a_step_resumes_at_the_byte_offset_of_its_cursor(
    s3: Any, bucket: str, sent: list[tuple[str, str | None]]
) -> None:
    # GIVEN a plain CSV of 100 rows
    text = profile_csv(100)
    put(s3, bucket, "p.csv", text)
    data = text.encode()

    # WHEN it is read 7 rows a step
    run = run_all({"bucket": bucket}, max_records=7)

    # THEN each step sends one ranged GetObject starting where the previous cursor ended,
    # and each cursor offset is the byte right after the last row returned
    gets = [rng for op, rng in sent if op == "GetObject"]
    assert len(gets) == len(run.results)
    assert gets[0] is not None and gets[0].startswith("bytes=0-")
    for cursor, rng in zip(run.cursors, gets[1:], strict=False):
        assert rng is not None and rng.startswith(f"bytes={cursor['offset']}-")
    done_rows = 0
    for res, cursor in zip(run.results[:-1], run.cursors[:-1], strict=True):
        done_rows += len(res.rows)
        assert len(parse_csv(data[: cursor["offset"]].decode())) == done_rows


@pytest.mark.parametrize("key", ["p.csv", "p.csv.gz"])
def test_reading_again_from_a_saved_cursor_returns_the_same_rows(s3: Any, bucket: str, key: str) -> None:
    # GIVEN a run stopped after two steps of 5 rows, its cursor saved
    text = profile_csv(30)
    put(s3, bucket, key, gzip.compress(text.encode()) if key.endswith(".gz") else text)
    cfg = {"bucket": bucket}
    reader = Registry().source("amazon_s3", "s3_file_import")
    first = reader.read(context(cfg, max_records=5))
    saved = json.loads(json.dumps(first.cursor))

    # WHEN the next step is read twice from that cursor (a crash, then a redelivery)
    a = reader.read(context(cfg, json.loads(json.dumps(saved)), max_records=5, step=1))
    b = reader.read(context(cfg, json.loads(json.dumps(saved)), max_records=5, step=1))

    # THEN both give the same rows and the same next cursor, and they follow the first step
    assert [(r.ref, r.data) for r in a.rows] == [(r.ref, r.data) for r in b.rows]
    assert a.cursor == b.cursor
    assert [r.data for r in first.rows + a.rows] == parse_csv(text)[:10]


def test_a_step_past_its_deadline_still_reads_one_row(s3: Any, bucket: str) -> None:
    # GIVEN a file of 5 rows
    put(s3, bucket, "p.csv", profile_csv(5))

    # WHEN every step starts with its deadline already passed
    run = run_all({"bucket": bucket}, deadline=lambda: time.monotonic() - 100)

    # THEN each step still returns exactly one row, so the run progresses and finishes
    assert [len(r.rows) for r in run.results] == [1, 1, 1, 1, 1]
    assert run.last.done
    assert run.data == parse_csv(profile_csv(5))


def test_a_step_stops_at_its_deadline(s3: Any, bucket: str) -> None:
    # GIVEN a 20,000-row file and a step whose time to stop reading (its deadline less the
    # reader's 5 s margin) has already come when it starts: whatever the machine's speed,
    # the reader must notice it while reading, not after the file
    text = profile_csv(20_000)
    put(s3, bucket, "p.csv", text)
    reader = S3FileReader(PROVIDER, safety_margin=5.0)
    deadline = time.monotonic() + 4.0

    # WHEN the step may read every row
    result = reader.read(context({"bucket": bucket}, max_records=100_000, deadline=deadline))

    # THEN it returns early, having read at least one record (progress first), with part of
    # the file and a cursor from which the rest follows
    assert not result.done
    assert 1 <= len(result.rows) < 20_000
    rows = [r.data for r in result.rows]
    nxt = reader.read(context({"bucket": bucket}, json.loads(json.dumps(result.cursor)), max_records=100_000))
    assert nxt.done
    assert rows + [r.data for r in nxt.rows] == parse_csv(text)


# --- incremental ---------------------------------------------------------------------------


def test_a_second_run_imports_only_new_and_changed_files(s3: Any, bucket: str) -> None:
    # GIVEN a finished run over two files
    cfg = {"bucket": bucket, "prefix": "in/"}
    put(s3, bucket, "in/a.csv", "email\na@example.com\n")
    put(s3, bucket, "in/b.csv", "email\nb@example.com\n")
    first = run_all(cfg)
    assert [d["email"] for d in first.data] == ["a@example.com", "b@example.com"]

    # WHEN b changes, c arrives, and the next run starts from the first run's state
    put(s3, bucket, "in/b.csv", "email\nb2@example.com\n")
    put(s3, bucket, "in/c.csv", "email\nc@example.com\n")
    second = run_all(cfg, state=first.last.state)

    # THEN only b and c are read; a third run has nothing to read
    assert [d["email"] for d in second.data] == ["b2@example.com", "c@example.com"]
    assert second.last.total == 2 * len("email\nb2@example.com\n") - 1
    third = run_all(cfg, state=second.last.state)
    assert third.data == []
    assert third.last.done and len(third.results) == 1
    assert third.last.state["count"] == 3


def test_without_incremental_every_run_reads_everything(s3: Any, bucket: str) -> None:
    # GIVEN a finished run
    put(s3, bucket, "a.csv", "email\na@example.com\n")
    first = run_all({"bucket": bucket})

    # WHEN the next run has incremental off
    again = run_all({"bucket": bucket, "incremental": False}, state=first.last.state)

    # THEN it reads the unchanged file again
    assert again.data == [{"email": "a@example.com"}]


def test_state_past_the_limit_keeps_the_newest_objects_and_a_watermark() -> None:
    # GIVEN 5 objects listed one second apart and room for 3 in the state
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    objs = [(f"k{i}", f'"etag{i}"', t0 + timedelta(seconds=i)) for i in range(5)]
    nxt = NextState(3)
    for key, etag, lm in objs:
        nxt.add(lm, object_digest("bkt", key, etag))

    # WHEN the state is written and read back by the next run
    state = json.loads(json.dumps(nxt.to_state(_cfg("bkt", "p/"))))
    seen = Seen.from_state(state, _cfg("bkt", "p/"))

    # THEN the 3 newest are remembered one by one, the older under the watermark; all 5 are
    # covered, a newer object and a changed one are not
    assert state["count"] == 5
    assert state["watermark"] == (t0 + timedelta(seconds=1)).isoformat()
    assert len(base64.b64decode(state["digests"])) == 3 * 6
    assert all(seen.covers(lm, object_digest("bkt", k, e)) for k, e, lm in objs)
    assert not seen.covers(t0 + timedelta(seconds=2), object_digest("bkt", "new", '"x"'))
    assert not seen.covers(t0 + timedelta(seconds=9), object_digest("bkt", "k4", '"etag4-changed"'))
    # another prefix does not trust the watermark, only the digests
    other = Seen.from_state(state, _cfg("bkt", "q/"))
    assert not other.covers(t0, object_digest("bkt", "k0", '"etag0"'))
    assert other.covers(t0 + timedelta(seconds=4), object_digest("bkt", "k4", '"etag4"'))


def _cfg(bucket: str, prefix: str) -> Any:
    from chalicelib.providers.s3 import S3ImportConfig

    return S3ImportConfig.model_validate({"bucket": bucket, "prefix": prefix})


# --- errors --------------------------------------------------------------------------------


def test_a_missing_bucket_is_a_final_error(aws: None) -> None:
    # WHEN the job's bucket does not exist
    with pytest.raises(ProviderError) as err:
        run_all({"bucket": f"sy-missing-{uuid.uuid4().hex[:10]}"})

    # THEN the run stops for good, on the bucket field, in S3's words
    assert err.value.transient is False
    assert err.value.field == "bucket"
    assert "does not exist (NoSuchBucket)" in err.value.reason


def test_an_unreachable_s3_is_transient(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN S3 answers nowhere (a closed local port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SWITCHYARD_PROVIDER_TIMEOUT", "1")
    config.reset()
    calls.reset()

    # WHEN a step runs
    with pytest.raises(ProviderError) as err:
        Registry().source("amazon_s3", "s3_file_import").read(context({"bucket": "sy-some-bucket"}))

    # THEN waiting may help
    assert err.value.transient is True


def test_a_file_deleted_during_the_run_is_skipped(s3: Any, bucket: str) -> None:
    # GIVEN a run that listed a.csv and b.csv; b is deleted after the first step
    put(s3, bucket, "a.csv", profile_csv(4))
    put(s3, bucket, "b.csv", "email\nb@example.com\n")

    def delete_b(step: int) -> None:
        if step == 1:
            s3.delete_object(Bucket=bucket, Key="b.csv")

    # WHEN the run goes on
    run = run_all({"bucket": bucket}, max_records=2, between=delete_b)

    # THEN a is read, b is reported and the run finishes
    assert len(run.data) == 4
    assert run.invalid == [(f"s3://{bucket}/b.csv", "object disappeared")]
    assert run.last.done
    # and b, put back with the same bytes, is imported by the next run
    put(s3, bucket, "b.csv", "email\nb@example.com\n")
    assert run_all({"bucket": bucket}, state=run.last.state).data == [{"email": "b@example.com"}]


def test_a_file_changed_during_its_reading_is_read_again_next_run(s3: Any, bucket: str) -> None:
    # GIVEN a run that has read 2 of a file's 6 rows when the file is replaced
    put(s3, bucket, "a.csv", profile_csv(6))

    def replace(step: int) -> None:
        if step == 1:
            put(s3, bucket, "a.csv", profile_csv(3, 500))

    # WHEN the run goes on
    run = run_all({"bucket": bucket}, max_records=2, between=replace)

    # THEN the rest of the old version is not mixed with the new one: the file is reported,
    # the run finishes, and the next run reads the new version whole
    assert len(run.data) == 2
    assert run.invalid == [
        (f"s3://{bucket}/a.csv", "object changed while the run read it; the next run reads it again")
    ]
    nxt = run_all({"bucket": bucket}, state=run.last.state)
    assert nxt.data == parse_csv(profile_csv(3, 500))


def test_the_export_workflow_has_no_import_step() -> None:
    with pytest.raises(ProviderError):
        Registry().source("amazon_s3", "s3_audience_export")


# --- the first window, asked for beside the listing -----------------------------------------

EARLY_THREAD = "s3-first-window"
HANG = 10  # s: only bounds a broken run; every wait below is for an event that must come


def hook(event: str, handler: Callable[..., None]) -> None:
    """On every provider client built from now on (the shared session copies its handlers)."""
    calls.shared_session().events.register(event, handler)


def test_a_prefix_that_names_one_file_is_read_while_it_is_listed(
    s3: Any, bucket: str, sent: list[tuple[str, str | None]]
) -> None:
    # GIVEN a job whose prefix is the key of one CSV, and a listing that waits (bounded) for
    # a GetObject to leave before it is sent
    text = profile_csv(30)
    put(s3, bucket, "drops/people.csv", text)
    early_sent = threading.Event()
    waited: list[bool] = []
    hook("before-send.s3.GetObject",
         lambda **kw: early_sent.set() if threading.current_thread().name == EARLY_THREAD else None)
    hook("before-send.s3.ListObjectsV2", lambda **kw: waited.append(early_sent.wait(HANG)))
    counter = CallCounter()

    # WHEN it is imported
    run = run_all({"bucket": bucket, "prefix": "drops/people.csv"}, counter=counter)

    # THEN the file's first window was asked for before the listing went out, and that answer
    # is the one read: one GetObject in all, the file's rows exactly
    assert waited == [True]
    assert counter.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 1}
    assert [op for op, _ in sent] == ["GetObject", "ListObjectsV2"]
    assert run.data == parse_csv(text)
    assert not counter.errors


def test_a_file_replaced_while_it_is_listed_is_read_at_the_listed_version(s3: Any, bucket: str) -> None:
    # GIVEN a file that is replaced once its first window has been answered, before the
    # listing is sent
    old, new = profile_csv(5), profile_csv(7, start=100)
    put(s3, bucket, "drops/people.csv", old)
    replaced = threading.Event()

    def replace(**kw: Any) -> None:
        if threading.current_thread().name == EARLY_THREAD:
            put(s3, bucket, "drops/people.csv", new)
            replaced.set()

    def wait(**kw: Any) -> None:  # (a before-send handler's return value would be the answer)
        replaced.wait(HANG)

    hook("after-call.s3.GetObject", replace)
    hook("before-send.s3.ListObjectsV2", wait)
    counter = CallCounter()

    # WHEN it is imported
    run = run_all({"bucket": bucket, "prefix": "drops/people.csv"}, counter=counter)

    # THEN the early answer (the old version) is dropped: the rows are those of the version
    # the listing planned, read again with its ETag
    assert replaced.is_set()
    assert run.data == parse_csv(new)
    assert counter.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 2}


def test_a_prefix_that_names_no_file_costs_one_request_and_no_error(s3: Any, bucket: str) -> None:
    # GIVEN files under "in/", a job whose prefix "in" is no key, and one whose prefix is a
    # key that a longer key also starts with
    put(s3, bucket, "in/a.csv", profile_csv(3))
    put(s3, bucket, "in/a.csv.old", profile_csv(2, start=50))
    put(s3, bucket, "in/b.csv", profile_csv(4, start=10))
    folder, key = CallCounter(), CallCounter()

    # WHEN both are imported
    by_folder = run_all({"bucket": bucket, "prefix": "in"}, counter=folder)
    by_key = run_all({"bucket": bucket, "prefix": "in/a.csv"}, counter=key)

    # THEN every planned file is read; the miss is one GetObject more, not an error; the
    # key's early answer serves its own file and the longer key is read as before
    assert by_folder.data == parse_csv(profile_csv(3)) + parse_csv(profile_csv(2, start=50)) \
        + parse_csv(profile_csv(4, start=10))
    assert folder.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 4}
    assert not folder.errors
    assert by_key.data == parse_csv(profile_csv(3)) + parse_csv(profile_csv(2, start=50))
    assert key.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 2}


def test_a_miss_still_under_way_does_not_hold_the_step_and_is_counted(s3: Any, bucket: str) -> None:
    # GIVEN a job whose prefix "in" is no key, and an early GetObject held before it is sent
    put(s3, bucket, "in/a.csv", profile_csv(3))
    release, passed = threading.Event(), threading.Event()

    def hold(**kw: Any) -> None:
        if threading.current_thread().name == EARLY_THREAD:
            release.wait(HANG)
            passed.set()

    hook("before-send.s3.GetObject", hold)
    counter = CallCounter()
    try:
        # WHEN the folder is imported
        run = run_all({"bucket": bucket, "prefix": "in"}, counter=counter)
        # THEN the step ended while the early request was still held (not waited for), with
        # its file read and the early request counted as sent
        assert not passed.is_set()
    finally:
        release.set()
    assert run.data == parse_csv(profile_csv(3))
    assert counter.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 2}


def test_a_listing_that_fails_beside_an_early_request_fails_in_the_listings_words(aws: None) -> None:
    # GIVEN a job on a bucket that does not exist, whose prefix can be a key (so its first
    # window is asked for beside the listing, and fails too)
    counter = CallCounter()
    with pytest.raises(ProviderError) as err:
        run_all({"bucket": f"sy-missing-{uuid.uuid4().hex[:10]}", "prefix": "drops/people.csv"}, counter=counter)

    # THEN the step's error is the listing's, final, on the bucket; both requests are counted
    assert err.value.transient is False and err.value.field == "bucket"
    assert "does not exist (NoSuchBucket)" in err.value.reason
    assert counter.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 1}


@pytest.mark.parametrize("prefix", ["drops/", "drops/people.csv.gz"])
def test_no_first_window_is_asked_for_a_folder_a_gzip_file_or_a_run_that_remembers(
    s3: Any, bucket: str, prefix: str
) -> None:
    # GIVEN a plain and a gzip file, and a finished run of the job
    put(s3, bucket, "drops/people.csv", profile_csv(3))
    put(s3, bucket, "drops/people.csv.gz", gzip.compress(profile_csv(3).encode()))
    first = CallCounter()
    state = run_all({"bucket": bucket, "prefix": prefix}, counter=first).last.state
    again = CallCounter()

    # WHEN it runs again with nothing new
    run_all({"bucket": bucket, "prefix": prefix}, state=state, counter=again)
    remembered = CallCounter()
    run_all({"bucket": bucket, "prefix": "drops/people.csv"}, state=run_all(
        {"bucket": bucket, "prefix": "drops/people.csv"}).last.state, counter=remembered)

    # THEN a folder or a gzip file is listed, then read (no early request), and a run that
    # remembers its files sends only the listing
    reads = 2 if prefix == "drops/" else 1
    assert first.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": reads}
    assert again.counts == {"s3.ListObjectsV2": 1}
    assert remembered.counts == {"s3.ListObjectsV2": 1}


# --- requests ------------------------------------------------------------------------------


def test_20000_rows_in_steps_of_1000_take_few_requests(s3: Any, bucket: str) -> None:
    # GIVEN a 20,000-row CSV of about 2 MB
    text = profile_csv(20_000)
    assert 1_500_000 < len(text) < 2_500_000
    put(s3, bucket, "in/profiles.csv", text)
    counter = CallCounter()

    # WHEN it is imported 1,000 rows a step
    run = run_all({"bucket": bucket, "prefix": "in/"}, max_records=1000, counter=counter)

    # THEN 20 steps send one GetObject each, plus the listing: 21 requests (budget 25)
    assert len(run.data) == 20_000
    assert len(run.results) == 20
    assert counter.counts == {"s3.ListObjectsV2": 1, "s3.GetObject": 20}
    assert counter.total <= 25
