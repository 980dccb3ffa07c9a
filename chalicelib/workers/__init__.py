"""Lambda entry points for SQS and schedules (the job engine and health sweep issues add them)."""
