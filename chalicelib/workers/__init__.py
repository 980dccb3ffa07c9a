"""Lambda entry points for SQS and schedules."""

# SQS handlers that answer with `batchItemFailures` (chalicelib/workers/events.py): the
# package turns ReportBatchItemFailures on for their event sources (infra/package.py), and
# the local event loop reads their answer (devserver/events.py). Lambda ignores the answer
# of any other handler and deletes its whole batch.
PARTIAL_BATCH_RESPONSES = frozenset({"deliver_alerts"})
