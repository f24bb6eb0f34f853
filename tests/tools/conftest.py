"""Makes tools/ importable, so the tests import loadprobe exactly as the CLI runs it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
