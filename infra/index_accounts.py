"""Operator migration: give the accounts made before the account index their entry (`make index-accounts`).

    python infra/index_accounts.py [--stage prod] [--dry-run]

Run once per stage, after deploying the version that writes the account index and before
`backfill_usage_keys` is relied on. It reads the main table once with a paged Scan that
asks only for account items without an index entry: the one Scan of Switchyard, kept here
so that nothing in chalicelib/ (no request, run or sweep) can reach it. Each account it
finds gets its entry from `AccountRepo.add_to_index`, a conditional write that adds only a
missing entry, so a second run, or two at once, changes nothing. Then every account of the
index gets its API Gateway usage key. `--dry-run` reads and counts, and writes nothing (no
entry, no key). A line per Scan page shows the progress.

Uses the standard AWS settings (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL for the local
stack) and SWITCHYARD_USAGE_PLAN_ID (the stack's `UsagePlanId` output) for the keys.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.bootstrap import Deps


@dataclass
class Progress:
    pages: int = 0
    read: int = 0  # items the Scan read (what it costs: DynamoDB bills what it reads)
    unlisted: int = 0  # accounts found without an index entry
    added: int = 0  # entries this run wrote

    def line(self, dry_run: bool) -> str:
        done = f"{self.unlisted:,} would be added" if dry_run else f"{self.added:,} added"
        return f"page {self.pages}: {self.read:,} items read, {self.unlisted:,} account(s) without an entry, {done}"


def index_accounts(ddb: Any, d: Deps, *, dry_run: bool = False, page_size: int | None = None,
                   say: Callable[[str], None] = print) -> Progress:
    """Scan `d`'s main table for account items without an index entry, a page at a time
    (DynamoDB's 1 MB pages, or `page_size` items read), and give each its entry (none with
    `dry_run`). `ddb` is a boto3 DynamoDB client."""
    from chalicelib.store import keys as K

    progress = Progress()
    pages = ddb.get_paginator("scan").paginate(
        TableName=d.table.name,
        ProjectionExpression="id",
        FilterExpression="SK = :sk AND #type = :type AND attribute_not_exists(GSI2PK)",
        ExpressionAttributeNames={"#type": "type"},
        ExpressionAttributeValues={":sk": {"S": K.ACCOUNT_SK}, ":type": {"S": "account"}},
        PaginationConfig={"PageSize": page_size} if page_size else {},
    )
    for page in pages:
        progress.pages += 1
        progress.read += int(page.get("ScannedCount", 0))
        for item in page.get("Items", []):
            progress.unlisted += 1
            if not dry_run and d.accounts.add_to_index(str(item["id"]["S"])):
                progress.added += 1
        say(progress.line(dry_run))
    return progress


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stage", default="prod", help="the stage whose accounts to index (default: prod)")
    parser.add_argument("--dry-run", action="store_true",
                        help="count the accounts without an index entry, write nothing")
    args = parser.parse_args(argv)
    os.environ["SWITCHYARD_STAGE"] = args.stage
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    import boto3

    from chalicelib.bootstrap import Deps
    from chalicelib.services.accounts import backfill_usage_keys

    d = Deps()
    print(f"scanning {d.table.name} for accounts without an index entry"
          + (" (dry run: nothing is written)" if args.dry_run else ""), flush=True)
    done = index_accounts(boto3.client("dynamodb"), d, dry_run=args.dry_run,
                          say=lambda line: print(line, flush=True))
    if args.dry_run:
        print(f"{done.unlisted} account(s) would be added to the account index; "
              "API keys not checked (dry run)")
        return 0
    keyed = backfill_usage_keys(d)
    print(f"{done.added} account(s) added to the account index; {keyed} account(s) have their API key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
