"""One botocore data loader per process, shared by every boto3 session the app makes.

The app's own clients (chalicelib/store/aws.py) and the provider clients built with a
customer's credentials (chalicelib/providers/calls.py) live in separate sessions, so that
the app's request tally never counts a customer's requests. Each new botocore session
would load the endpoint and retry data and every service model again (~35 ms on the first
provider request); a shared loader reads each file once per process.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_loader: Any = None


def botocore_session(event_hooks: Any = None) -> Any:
    """A new botocore session (for `boto3.session.Session(botocore_session=...)`) that
    reads its data through the process's shared loader (and, when given, keeps its event
    handlers in `event_hooks`)."""
    global _loader
    import botocore.session

    session = botocore.session.Session(event_hooks=event_hooks)
    with _lock:
        if _loader is None:
            _loader = session.get_component("data_loader")
        else:
            # boto3.Session appends its own data folder to the loader's search path each
            # time: keep one entry of each, so that resets (tests) do not grow it.
            _loader.search_paths[:] = list(dict.fromkeys(_loader.search_paths))
            session.register_component("data_loader", _loader)
    return session
