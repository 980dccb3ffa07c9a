"""A run of a job, one step per SQS message (docs/engine.md).

`runs/engine.py` drives a run: it reads the message, starts or resumes the run, takes
the step's lease and calls the job type's stage (import, export, enrichment, task), which
returns a `StepOutcome` (outcome.py). `commit.py` writes that outcome in the step's single
transaction; `control.py` holds what every stage shares: the delivery, the engine's
options, the failed-step path and the re-queueing of the next step.
"""
