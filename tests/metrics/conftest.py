"""The metrics tests borrow the end-to-end tests' browser (tests/e2e/agent.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
