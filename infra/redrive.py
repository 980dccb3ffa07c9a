"""Move messages from Switchyard's dead-letter queues back to their queues (`make redrive`).

    python infra/redrive.py [runs|health|alerts|backfill|realtime ...] [--max N] [--dry-run]

Uses the standard AWS settings (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL for the local
stack). Each message is sent to its source queue first and deleted from the DLQ only once
SQS accepted it, so a crash in between duplicates a message rather than losing it (the
runner is idempotent per step). Read docs/operations.md before redriving: a message that
keeps failing will come back.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

QUEUES = ("runs", "health", "alerts", "backfill", "realtime")


def redrive(sqs: Any, name: str, *, stage: str, limit: int, dry_run: bool = False) -> int:
    """Move up to `limit` messages of switchyard-<stage>-<name>-dlq to switchyard-<stage>-<name>;
    returns how many."""
    source = sqs.get_queue_url(QueueName=f"switchyard-{stage}-{name}")["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"switchyard-{stage}-{name}-dlq")["QueueUrl"]
    moved = 0
    while moved < limit:
        msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=min(10, limit - moved),
                                   MessageAttributeNames=["All"], VisibilityTimeout=60,
                                   WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            break
        if dry_run:
            moved += len(msgs)
            for m in msgs:  # make them visible again at once
                sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            break
        entries = [{"Id": str(i), "MessageBody": m["Body"],
                    **({"MessageAttributes": m["MessageAttributes"]} if m.get("MessageAttributes") else {})}
                   for i, m in enumerate(msgs)]
        resp = sqs.send_message_batch(QueueUrl=source, Entries=entries)
        sent = {e["Id"] for e in resp.get("Successful", [])}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs) if str(i) in sent]
        if done:
            sqs.delete_message_batch(QueueUrl=dlq, Entries=done)
        moved += len(done)
        if len(done) < len(msgs):
            print(f"{name}: {len(msgs) - len(done)} messages were not accepted; they stay in the DLQ",
                  file=sys.stderr)
            break
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("queues", nargs="*", default=list(QUEUES), help="runs, health, alerts, backfill and/or realtime (default: all)")
    parser.add_argument("--stage", default="prod", help="the stage whose queues to redrive (default: prod)")
    parser.add_argument("--max", type=int, default=10_000, help="at most this many per queue")
    parser.add_argument("--dry-run", action="store_true", help="count what would move, move nothing")
    args = parser.parse_args(argv)
    unknown = [q for q in args.queues if q not in QUEUES]
    if unknown:
        parser.error(f"unknown queue(s) {', '.join(unknown)}; use {', '.join(QUEUES)}")
    import boto3

    sqs = boto3.client("sqs")
    for name in args.queues or QUEUES:
        n = redrive(sqs, name, stage=args.stage, limit=args.max, dry_run=args.dry_run)
        print(f"{name}: {'would move' if args.dry_run else 'moved'} {n} message(s)"
              + (" (first batch only)" if args.dry_run and n else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
