"""Public AWS prices (us-east-1, on-demand, USD) and what a run costs at them.

One table, so a price change is one edit. Sources: the AWS pricing pages for DynamoDB
on-demand (after the Nov 2024 reduction), SQS standard, Secrets Manager, Lambda (x86),
EventBridge Scheduler. Provider-side requests (e.g. S3 GETs on the customer's bucket) are
billed to the customer's account and shown as counts, not dollars.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.domain.schedules import ScheduleError, fires_per_month

PRICES_USD: dict[str, float] = {
    "dynamodb_write_unit": 0.625 / 1_000_000,
    "dynamodb_read_unit": 0.125 / 1_000_000,
    "sqs_request": 0.40 / 1_000_000,
    "secretsmanager_request": 0.05 / 10_000,
    "lambda_gb_second": 0.0000166667,
    "lambda_request": 0.20 / 1_000_000,
    "scheduler_invocation": 1.00 / 1_000_000,
}

MINUTES_PER_MONTH = 30 * 24 * 60


def run_cost_usd(cost: dict[str, float]) -> float:
    """Dollars for one run from its recorded figures (units when known, else requests)."""
    p = PRICES_USD
    wcu = cost.get("dynamodb_wcu")
    rcu = cost.get("dynamodb_rcu")
    if wcu is None and rcu is None:
        # No consumed-capacity figures: count each DynamoDB request as one write unit.
        ddb = cost.get("aws_dynamodb", 0) * p["dynamodb_write_unit"]
    else:
        ddb = (wcu or 0) * p["dynamodb_write_unit"] + (rcu or 0) * p["dynamodb_read_unit"]
    return round(
        ddb
        + cost.get("aws_sqs", 0) * p["sqs_request"]
        + cost.get("aws_secretsmanager", 0) * p["secretsmanager_request"]
        + cost.get("lambda_gb_s", 0) * p["lambda_gb_second"]
        + cost.get("steps", 0) * p["lambda_request"],
        8,
    )


def runs_per_month(schedule: dict[str, Any] | None) -> float:
    if not schedule or schedule.get("type") == "once":
        return 0.0
    kind = schedule.get("type")
    if kind == "interval":
        return MINUTES_PER_MONTH / max(1, int(schedule.get("every_minutes", 60)))
    if kind == "daily":
        return 30.0
    if kind == "weekly":
        return 30 / 7
    if kind == "cron":
        try:
            return fires_per_month(schedule, datetime.now(UTC))
        except ScheduleError:
            return 0.0
    return 0.0


def monthly_estimate(schedule: dict[str, Any] | None, last_run_cost: dict[str, float] | None) -> dict[str, Any]:
    per_run = run_cost_usd(last_run_cost or {})
    n = runs_per_month(schedule)
    return {
        "last_run_usd": per_run,
        "runs_per_month": round(n, 1),
        "monthly_usd": round(per_run * n + n * PRICES_USD["scheduler_invocation"], 6),
        "basis": "public us-east-1 on-demand prices; the last run's counted requests and time",
    }
