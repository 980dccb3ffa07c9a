"""Lambda entry points for SQS and schedules."""

# SQS handlers that answer with `batchItemFailures` (the alerts worker through
# chalicelib/workers/events.py; the collect worker, whose FIFO order it keeps): the
# package turns ReportBatchItemFailures on for their event sources (infra/package.py), and
# the local event loop reads their answer (devserver/events.py). Lambda ignores the answer
# of any other handler and deletes its whole batch.
PARTIAL_BATCH_RESPONSES = frozenset({"deliver_alerts", "collect_handoffs"})
# The DynamoDB stream handlers that answer `batchItemFailures` (the package turns
# ReportBatchItemFailures on for their event source; the local stream poller reads it).
STREAM_PARTIAL_BATCH_RESPONSES = frozenset({"profile_changes"})
