"""Pure models and rules: no I/O, no AWS, no HTTP."""
