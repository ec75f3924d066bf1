"""The run directory as a format: every file a run, an export or a sweep writes and reads back.

Each file has one schema (pydantic) with a format version, one reader and one writer, here; older
formats are upgraded in compat.py. docs/run-format.md is generated from these schemas (docs.py).
"""
