"""Per-account request limits: which API Gateway usage-plan key a request counts against.

Every authorized route requires an API key whose source is the authorizer: API Gateway
counts the request against the key the authorizer names (`usageIdentifierKey`) and answers
429 itself, before the route's Lambda runs, once that key's bucket is empty. Each Switchyard
account has its own key, so one tenant spending its requests leaves every other tenant's
untouched; callers without a valid token share one key.

The key's value is derived from the stage and the account id, so the authorizer names it
without a read. It is an identifier, not a credential: with the key source set to the
authorizer, API Gateway ignores any `x-api-key` a client sends.
"""

from __future__ import annotations

ANONYMOUS = "anonymous"

# Per key (per account), in requests per second and the bucket's size. Below the stage-wide
# limit (100/s, burst 200) so that two busy tenants cannot use the whole stage between them.
DEFAULT_RATE_LIMIT = 25.0
DEFAULT_BURST_LIMIT = 50

# API Gateway answers a throttled request with this Retry-After (a gateway response can only
# send a fixed value); one second refills `rate` requests.
RETRY_AFTER_SECONDS = 1


def usage_key(stage: str, account_id: str | None) -> str:
    """The value (and name) of the API key the requests of `account_id` count against; None
    stands for callers without a valid token. Stage-qualified: two stages in one AWS account
    and region share API Gateway's key namespace."""
    return f"switchyard-{stage}-{account_id or ANONYMOUS}"
