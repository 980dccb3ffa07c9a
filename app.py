"""Switchyard: wiring only. Features live in chalicelib/api blueprints."""

import importlib

from chalice import Chalice

# Before the rest of chalicelib: no cyclic collection until the cold start is over.
from chalicelib import coldstart_begin  # noqa: F401  # isort: skip
from chalicelib import coldstart, logs
from chalicelib.api import (
    admin,
    alerts,
    audiences,
    audit,
    auth,
    authorizations,
    catalog,
    collect,
    jobs,
    meta,
    oauth,
    profiles,
)
from chalicelib.workers import alerts as alert_worker
from chalicelib.workers import collect as collect_worker
from chalicelib.workers import health, membership, purge, realtime, runner

# configure_logs=False: Chalice would give the "switchyard" logger (its app_name, the parent
# of every switchyard.* logger) a plain-text stdout handler, printing each line twice. The
# Powertools JSON handler is the only one; each invocation's correlation ids are bound and
# cleared by the middleware (chalicelib/logs.py).
app = Chalice(app_name="switchyard", configure_logs=False)
app.register_middleware(coldstart.middleware, "all")
app.register_middleware(logs.middleware, "all")
app.register_blueprint(auth.bp)
app.register_blueprint(meta.bp)
app.register_blueprint(catalog.bp)
app.register_blueprint(authorizations.bp)
app.register_blueprint(jobs.bp)
app.register_blueprint(admin.bp)
app.register_blueprint(profiles.bp)
app.register_blueprint(audiences.bp)
app.register_blueprint(audit.bp)
app.register_blueprint(alerts.bp)
app.register_blueprint(oauth.bp)
app.register_blueprint(runner.bp)
app.register_blueprint(purge.bp)
app.register_blueprint(health.bp)
app.register_blueprint(alert_worker.bp)
app.register_blueprint(collect.bp)
app.register_blueprint(collect_worker.bp)
app.register_blueprint(membership.bp)
app.register_blueprint(realtime.bp)

# Lambda imports the module a function's handler names, and Chalice names a blueprint's
# handler after the blueprint's module (chalicelib.workers.runner.run_step): that import
# would skip this file, so no middleware and no cold-start hold. infra/package.py points
# every function at app.<name> instead; these are those names.
for _source in (*app.event_sources, *app.builtin_auth_handlers, *app.pure_lambda_functions):
    _module, _, _name = _source.handler_string.rpartition(".")
    if _name in globals():
        raise RuntimeError(f"two Lambda handlers named {_name}")
    globals()[_name] = getattr(importlib.import_module(_module), _name)
