"""Run one benchmark row in a fresh Python process and take its result back as JSON.

A fresh process per row keeps rows from sharing what they should not: compiled-code caches, the
peak resident memory (``ru_maxrss`` only grows), warmed-up allocators. Rows still run one after the
other — never two timed things at once on a few cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def run_row(module: str, function: str, *args: Any, env: dict[str, str] | None = None) -> dict:
    """``module.function(*args)`` (plain JSON-able arguments) in a new interpreter; its returned dict."""
    code = f"import json, {module} as m; print(json.dumps(m.{function}(*{args!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    if done.returncode:
        raise RuntimeError(f"{module}.{function}{args!r} failed in its own process:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


__all__ = ["run_row"]
