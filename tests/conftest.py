"""Test-session setup: verdicts of the rule-file check go to a fresh cache, not the user's."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("ISAMAP_CACHE_DIR", tempfile.mkdtemp(prefix="isamap-test-cache-"))
