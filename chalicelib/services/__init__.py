"""Use cases. Each takes the `Deps` it is handed, typed by what its module uses
(`needs.py`), and a Principal; no HTTP vocabulary."""
