"""Where DynamoDB's write protocol may appear in chalicelib/: the codec and transaction module
(store/dynamo.py) alone recognises a refused condition or a cancelled transaction and reads
its reasons; repositories add named writes to a transaction; nothing outside store/ builds a
TransactWriteItems element or adds a raw write to a transaction."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "chalicelib"
ONLY_IN_DYNAMO = {
    "a refused condition recognised by hand": re.compile(r"ConditionalCheckFailed"),
    "a cancelled transaction recognised by hand": re.compile(r"TransactionCanceled"),
    "a raw TransactWriteItems request": re.compile(r"\.transact\(|transact_write_items"),
    "cancellation reasons read by position": re.compile(r"\.reasons\b"),
}
ONLY_IN_STORE = {
    "a TransactWriteItems element": re.compile(r"\"(?:Put|Update|Delete|ConditionCheck)\"\s*:"),
    "a raw write added to a transaction": re.compile(r"\btx\.add\("),
}


def breaches(path: str, text: str) -> list[str]:
    if path == "store/dynamo.py":
        return []
    rules = dict(ONLY_IN_DYNAMO)
    if not path.startswith("store/"):
        rules.update(ONLY_IN_STORE)
    return [f"{path}:{n}: {what}" for n, line in enumerate(text.splitlines(), 1)
            for what, pattern in rules.items() if pattern.search(line)]


def test_the_check_sees_each_breach_where_it_is_one() -> None:
    by_hand = 'if code == "ConditionalCheckFailedException":\n    return False\n'
    positional = "if exc.reasons[2] == x:\n"
    raw = 'tx.add("x", {"Put": {"TableName": t}})\n'
    assert breaches("store/rates.py", by_hand) == ["store/rates.py:1: a refused condition recognised by hand"]
    assert breaches("store/members.py", positional) == ["store/members.py:1: cancellation reasons read by position"]
    assert breaches("services/collect.py", raw) == [
        "services/collect.py:1: a TransactWriteItems element", "services/collect.py:1: a raw write added to a transaction"]
    # a repository may add its own named writes; the transaction module may do everything
    assert breaches("store/jobs.py", raw) == []
    assert breaches("store/dynamo.py", by_hand + positional + raw) == []


def test_only_the_store_speaks_dynamodbs_write_protocol() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert any(p.name == "dynamo.py" for p in files)
    found = [b for p in files for b in breaches(p.relative_to(PACKAGE).as_posix(), p.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)
