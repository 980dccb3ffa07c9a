"""Switchyard: wiring only. Features live in chalicelib/api blueprints."""

from chalice import Chalice

# Before the rest of chalicelib: no cyclic collection until the cold start is over.
from chalicelib import coldstart  # isort: skip
from chalicelib import logs
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
