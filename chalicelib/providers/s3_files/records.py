"""Lines to records: CSV (a header, then rows of its width) and JSON Lines (one object a
line), into one step's rows and invalid records."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from typing import Any

from chalicelib.providers.json_records import json_object
from chalicelib.providers.roles import SourceRow
from chalicelib.providers.s3 import S3ImportConfig
from chalicelib.providers.s3_files.lines import (
    MAX_LINE_BYTES,
    MAX_RECORD_BYTES,
    MIB,
    CsvFeeder,
    Lines,
    LineTooLong,
    ObjectProblem,
    RecordTooLong,
)
from chalicelib.providers.s3_files.plan import HEADER_MAX_JSON, Cursor


@dataclass
class Step:
    max_records: int
    stop_at: float  # time.monotonic() past which the step stops (deadline - margin)
    rows: list[SourceRow] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)
    records: int = 0  # rows + invalid records this step
    blank: int = 0  # blank lines passed this step (progress, but not records)
    objects_finished: int = 0

    def full(self) -> bool:
        return self.records >= self.max_records

    def late(self) -> bool:
        # Progress first: a step that has consumed nothing reads one record even when late.
        progressed = self.records > 0 or self.blank > 0 or self.objects_finished > 0
        return progressed and time.monotonic() > self.stop_at

    def should_stop(self) -> bool:
        return self.full() or self.late()

    def row(self, data: dict[str, Any], ref: str) -> None:
        self.rows.append(SourceRow(data=data, ref=ref))
        self.records += 1

    def bad(self, ref: str, reason: str) -> None:
        self.invalid.append((ref, reason))
        self.records += 1


def read_csv(lines: Lines, cfg: S3ImportConfig, cur: Cursor, step: Step, where: str) -> bool:
    """CSV records into `step`; True when the object ended."""
    feeder = CsvFeeder(lines)
    reader = csv.reader(feeder, delimiter=cfg.csv_delimiter, quotechar='"', strict=True)
    if cur.header is None:
        if cur.offset != 0:
            raise ObjectProblem("the cursor lost this file's CSV header")
        header = csv_header(reader, feeder)
        if header is None:
            return True  # nothing but blank lines
        cur.header = header
    header = cur.header
    width = len(header)
    while not step.should_stop():
        start = cur.line + 1
        feeder.begin_record()
        try:
            record = next(reader)
        except StopIteration:
            return True
        except csv.Error as exc:
            step.bad(f"{where}#{start}", f"malformed CSV ({exc})")
            continue
        except LineTooLong:
            step.bad(f"{where}#{start}", f"line longer than {MAX_LINE_BYTES // MIB} MiB")
            continue
        except RecordTooLong:
            step.bad(f"{where}#{start}", f"record longer than {MAX_RECORD_BYTES // MIB} MiB")
            continue
        if not record:
            step.blank += 1
            continue
        if feeder.bad_text:
            step.bad(f"{where}#{start}", "not UTF-8 text")
        elif len(record) != width:
            step.bad(f"{where}#{start}", f"expected {width} fields, found {len(record)}")
        else:
            step.row(dict(zip(header, record, strict=True)), f"{where}#{start}")
    return False


def csv_header(reader: Any, feeder: CsvFeeder) -> list[str] | None:
    while True:
        feeder.begin_record()
        try:
            record = next(reader)
        except StopIteration:
            return None
        except (csv.Error, LineTooLong, RecordTooLong) as exc:
            raise ObjectProblem(f"cannot read the CSV header ({exc or type(exc).__name__})") from None
        if not record:
            continue
        if feeder.bad_text:
            raise ObjectProblem("the CSV header is not UTF-8 text")
        header = [str(name) for name in record]
        dupes = sorted({n for n in header if header.count(n) > 1})
        if dupes:
            raise ObjectProblem(f"the CSV header repeats a column: {', '.join(dupes)}")
        if len(json.dumps(header)) > HEADER_MAX_JSON:
            raise ObjectProblem(f"the CSV header is longer than {HEADER_MAX_JSON // 1000} KB")
        return header


def read_jsonl(lines: Lines, cur: Cursor, step: Step, where: str) -> bool:
    """JSON Lines records into `step`; True when the object ended."""
    while not step.should_stop():
        start = cur.line + 1
        try:
            line = lines.next_line()
        except LineTooLong:
            step.bad(f"{where}#{start}", f"line longer than {MAX_LINE_BYTES // MIB} MiB")
            continue
        if line is None:
            return True
        text = line.strip()
        if not text:
            step.blank += 1
            continue
        ref = f"{where}#{start}"
        value = json_object(text)
        if isinstance(value, str):
            step.bad(ref, value)
            continue
        step.row(value, ref)
    return False
