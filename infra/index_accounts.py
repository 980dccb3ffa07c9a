"""Operator migration: list the accounts made before the account index (`make index-accounts`).

    python infra/index_accounts.py [--stage prod]

Run once per stage, after deploying the version that writes the account index and before
`backfill_usage_keys` is relied on: it reads the whole main table once (a Scan, the only
one in the code) and gives each unlisted account its index entry, then gives every account
its API Gateway usage key. Idempotent. Uses the standard AWS settings (AWS_PROFILE,
AWS_REGION, AWS_ENDPOINT_URL for the local stack) and SWITCHYARD_USAGE_PLAN_ID (the
stack's `UsagePlanId` output) for the keys.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="prod", help="the stage whose accounts to index (default: prod)")
    args = parser.parse_args(argv)
    os.environ["SWITCHYARD_STAGE"] = args.stage
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from chalicelib.bootstrap import Deps
    from chalicelib.services.accounts import backfill_usage_keys, index_existing_accounts

    d = Deps()
    added = index_existing_accounts(d)
    keyed = backfill_usage_keys(d)
    print(f"{added} account(s) added to the account index; {keyed} account(s) have their API key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
