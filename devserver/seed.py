"""Demo data for the local stack: one account with an admin token, one S3 bucket of profiles.

Idempotent across restarts: the demo account is remembered in the state snapshot's
metadata and only created when the restored state does not hold it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEMO_BUCKET = "switchyard-demo"
DEMO_KEY = "imports/profiles.csv"
DEMO_ACCOUNT = "Demo"
DEMO_EMAIL = "admin@demo.example"
TOKEN_FILE = "admin-token"
TOKEN_ENV = "SWITCHYARD_ADMIN_TOKEN"


class SeedError(Exception):
    """A configuration problem the developer must fix (printed without a traceback)."""


@dataclass(frozen=True)
class Seeded:
    account_id: str
    user_id: str
    token: str
    created: bool  # False when the account came back from saved state
    token_source: str  # "env", "file" or "generated"


def admin_token(state_dir: Path) -> tuple[str, str]:
    """The admin token to seed: $SWITCHYARD_ADMIN_TOKEN, else one generated once and kept."""
    from chalicelib.domain import tokens
    from chalicelib.domain.ids import new_id

    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        why = tokens.chosen_token_problem(env)
        if why is not None:
            raise SeedError(f"{TOKEN_ENV} {why}; e.g. tok_local.$({tokens.GENERATE_HINT}),"
                            " or leave it unset and one is generated")
        return env, "env"
    path = state_dir / TOKEN_FILE
    if path.exists():
        saved = path.read_text().strip()
        if tokens.looks_like_token(saved):
            return saved, "file"
        raise SeedError(f"{path} does not hold a well-formed token; delete it to generate a new one")
    token = f"{new_id('tok')}.{tokens.new_secret()}"
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # Local development only: the file is readable by its owner alone.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return token, "generated"


def seed_account(meta: dict[str, Any], token: str, token_source: str) -> Seeded:
    """Create the demo account unless the restored state has it; make sure `token` works."""
    from chalicelib.bootstrap import Deps
    from chalicelib.services import accounts

    d = Deps()
    known = meta.get("demo_account")
    if known and d.accounts.get_account(known["account_id"]) is not None:
        account_id, user_id = known["account_id"], known["user_id"]
        if accounts.resolve_token(d, token) is None:
            # A different $SWITCHYARD_ADMIN_TOKEN than last time: register it for the demo admin.
            if d.accounts.get_user(account_id, user_id) is None:
                raise SeedError(f"the demo admin {user_id} is missing from the saved state;"
                                " delete the state directory to start over")
            accounts.register_token(d, account_id, user_id, token, "local admin token")
        return Seeded(account_id, user_id, token, False, token_source)
    account, admin, _ = accounts.create_account(d, DEMO_ACCOUNT, DEMO_EMAIL, admin_token=token)
    meta["demo_account"] = {"account_id": account.id, "user_id": admin.id}
    return Seeded(account.id, admin.id, token, True, token_source)


FIRST = ("Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Hugo",
         "Chloe", "Arjun", "Priya", "Kenji", "Yuki", "Amara", "Kwame", "Lena", "Jonas", "Elif",
         "Omar", "Layla", "Diego", "Valentina", "Wei", "Mei", "Santiago", "Isabel", "Finn", "Nora",
         "Tomás", "Zoe", "Ibrahim", "Fatima", "Lars", "Ingrid", "Rafael", "Camila", "Ethan", "Grace")
LAST = ("Smith", "Garcia", "Müller", "Rossi", "Dubois", "Kowalski", "Tanaka", "Kim", "Nguyen",
        "Patel", "Okafor", "Mensah", "Johansson", "Novak", "Silva", "Santos", "Yilmaz", "Cohen",
        "Ivanova", "Hernández", "Chen", "Wang", "Larsen", "Murphy", "O'Brien", "Fischer", "Bianchi",
        "Moreau", "Costa", "Jensen", "Haddad", "Singh", "Walker", "Brown", "Lopez", "Schmidt")
CITIES = (("Berlin", "DE"), ("Munich", "DE"), ("Paris", "FR"), ("Lyon", "FR"), ("Madrid", "ES"),
          ("Barcelona", "ES"), ("Milan", "IT"), ("Rome", "IT"), ("Amsterdam", "NL"),
          ("Stockholm", "SE"), ("Oslo", "NO"), ("Warsaw", "PL"), ("Lisbon", "PT"),
          ("London", "GB"), ("Dublin", "IE"), ("New York", "US"), ("Austin", "US"),
          ("San Francisco", "US"), ("Toronto", "CA"), ("Mexico City", "MX"), ("São Paulo", "BR"),
          ("Buenos Aires", "AR"), ("Lagos", "NG"), ("Nairobi", "KE"), ("Cairo", "EG"),
          ("Istanbul", "TR"), ("Bangalore", "IN"), ("Singapore", "SG"), ("Tokyo", "JP"),
          ("Seoul", "KR"), ("Sydney", "AU"))
PLANS = ("free", "starter", "pro", "enterprise")
PLAN_WEIGHTS = (50, 25, 18, 7)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "corp.example")


def _ascii(name: str) -> str:
    import unicodedata

    flat = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(c for c in flat.lower() if c.isalnum())


def profiles_csv(rows: int = 200, seed: int = 20240601) -> bytes:
    """Deterministic, realistic-looking profiles (same bytes on every machine)."""
    rnd = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    span = int((datetime(2025, 6, 30, tzinfo=UTC) - start).total_seconds())
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["email", "first_name", "last_name", "city", "country", "plan", "signed_up_at"])
    seen: set[str] = set()
    while len(seen) < rows:
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        email = f"{_ascii(first)}.{_ascii(last)}{rnd.randint(1, 99)}@{rnd.choice(DOMAINS)}"
        if email in seen:
            continue
        seen.add(email)
        city, country = rnd.choice(CITIES)
        signed_up = start + timedelta(seconds=rnd.randrange(span))
        w.writerow([email, first, last, city, country, rnd.choices(PLANS, PLAN_WEIGHTS)[0],
                    signed_up.strftime("%Y-%m-%dT%H:%M:%SZ")])
    return out.getvalue().encode("utf-8")


def seed_bucket() -> bool:
    """Create s3://switchyard-demo/imports/profiles.csv unless it is there; True if written."""
    from botocore.exceptions import ClientError

    from chalicelib.store import aws

    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=DEMO_BUCKET, Key=DEMO_KEY)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NoSuchBucket"):
            raise
    try:
        s3.create_bucket(Bucket=DEMO_BUCKET)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    s3.put_object(Bucket=DEMO_BUCKET, Key=DEMO_KEY, Body=profiles_csv(), ContentType="text/csv")
    return True


def seed_oauth_apps(port: int) -> bool:
    """Dummy OAuth client credentials of every provider with an OAuth flow (Mailchimp,
    Google) for local mode (the real ones are created per stage by whoever registers the
    app with the provider); True if any was written. A flow started locally goes to the
    real provider, which refuses the dummy client id."""
    from botocore.exceptions import ClientError

    from chalicelib.services.oauth_clients import PROVIDERS, secret_name
    from chalicelib.store import aws

    sm = aws.client("secretsmanager")
    written = False
    for provider in PROVIDERS:
        value = {"client_id": "local-dummy-client-id", "client_secret": "local-dummy-client-secret",
                 "redirect_uri": f"http://127.0.0.1:{port}/api/v1/oauth/{provider}/callback"}
        try:
            sm.create_secret(Name=secret_name(provider), SecretString=json.dumps(value))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceExistsException":
                raise
            continue
        written = True
    return written
