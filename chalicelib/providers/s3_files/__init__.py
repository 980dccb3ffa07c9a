"""S3 file import, one step at a time: CSV / JSON Lines objects under a prefix.

The job engine (docs/engine.md) calls `S3FileReader.read(ctx)` once per step and stores the
returned cursor; the next step starts from it. Everything a step needs to resume is in the
cursor, so a step may run in any process, and reading twice from one cursor returns the
same rows (the engine re-reads after a crash).

Step 0 (no cursor) lists the prefix (ListObjectsV2, 1,000 keys a request), skips "folders"
(keys ending in "/") and empty objects, keeps the objects that are new or changed since the
last finished run (when `incremental`), and writes the plan into the cursor. Every step then
reads objects in key order, at most `ctx.max_records` records, and stops early near the
deadline; it always consumes at least one record (or finishes one object) so a run
progresses whatever the clock says.

Reading is streamed and memory stays flat whatever the file size:

* plain objects: GetObject with `Range: bytes=<offset>-<end>` and `If-Match: <etag>`; the
  window is sized from the run's bytes-per-record so a step normally sends ONE GetObject per
  object; a later step resumes at the byte offset in the cursor without re-reading.
* a prefix that may name one object (no trailing "/", not gzip) on a run with nothing
  remembered: step 0 asks for that key's first window while the listing is in flight, and
  uses the answer only if the listing plans that key first with the answer's ETag (the
  bytes of the version the listing names, as If-Match would give); otherwise it is dropped.
* gzip objects: a gzip stream cannot be entered at an offset, so a step re-reads the object
  from its first byte and discards the decompressed bytes before the checkpoint (cost: the
  transfer and inflate of everything before the offset, at every step of that object).
  Concatenated gzip members are read one after another.
* records: lines are cut by a C BufferedReader (`readline` with a 1 MiB limit); CSV lines
  go through `csv.reader`, which pulls exactly the lines one record needs (quoted fields
  may hold the delimiter, doubled quotes and newlines). A UTF-8 BOM at the start of an
  object is dropped; CRLF and LF both work.

Where things are: reader.py (S3FileReader: listing, reading an object's bytes), early.py
(the first window asked for beside the listing), plan.py
(the cursor and its page of the plan), state.py (what the last run imported), lines.py (bytes
to lines), records.py (CSV and JSON Lines records). Cursor and state formats, limits: see
`S3FileReader` and docs/decisions.md.
"""

from chalicelib.providers.s3_files.reader import S3FileReader

__all__ = ["S3FileReader"]
