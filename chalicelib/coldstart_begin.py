"""Importing this stops the cyclic collector for the cold start (see `coldstart`).

app.py imports it before anything else of chalicelib, so the collector is off while the rest
loads; a module of its own because the stop has to happen at import time, and only there.
"""

from chalicelib import coldstart

coldstart.hold()
