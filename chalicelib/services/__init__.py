"""Use cases. They take their dependencies (Deps) and a Principal; no HTTP vocabulary."""
