"""Hook for the local event loop (SQS messages and schedules -> the app's handlers).

`chalice local` only serves HTTP; in AWS, Lambda delivers SQS batches and EventBridge
schedules to `app.handler_map[name](event, context)`. The job-engine issue fills
`start_event_loop` in: poll the runs/health queues (receive + delete, redrive to the
DLQ by hand since moto's `start_message_move_task` fails), fire schedules, and call the
handlers with events built like `chalice.test`'s `generate_sqs_event` /
`generate_cw_event`.

Until then nothing is delivered: messages sent to the queues stay there (and are lost
on restart, since SQS state is not persisted).
"""

from __future__ import annotations

import threading

from chalice.app import Chalice


def event_handlers(app: Chalice) -> list[str]:
    """Names of the app's non-HTTP handlers (what the loop will have to drive)."""
    return sorted(getattr(src, "name", "?") for src in app.event_sources)


def start_event_loop(app: Chalice, stop: threading.Event) -> list[threading.Thread]:
    """Start the local event loop; return its threads (joined on shutdown after `stop` is set).

    Not implemented yet: the job-engine issue replaces this body. No thread is started.
    """
    return []
