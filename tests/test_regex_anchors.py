"""Validators anchor at the true end of the text: ``$`` would let a trailing newline through.

``re.match(r"^[a-z]+$", "abc\\n")`` matches (``$`` also matches before a final newline), so an
identifier checked that way can carry a newline into a log line, a Redis key or a header.
Every whole-value pattern of the broker ends in ``\\Z`` instead.
"""

from __future__ import annotations

import pathlib
import re

import pytest

from broker.admin.principals import SERVICE_ID, TENANT_ID
from broker.mapping.model import SCHOOL_CODE
from broker.registry import relying_parties

ROOT = pathlib.Path(__file__).resolve().parent.parent / "broker"


def test_no_whole_value_pattern_ends_in_a_dollar():
    offenders = [f"{path.relative_to(ROOT.parent)}:{n}" for path in ROOT.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r're\.compile\(r?b?"\^[^"]*(?<!\\)\$"', line)]
    assert offenders == []


@pytest.mark.parametrize(("pattern", "value"), [
    (relying_parties._CLIENT_ID, "demo-service-a"),
    (TENANT_ID, "vantaa"),
    (SERVICE_ID, "sp/koulu-app"),
    (SCHOOL_CODE, "00123"),
])
def test_a_trailing_newline_is_refused(pattern, value):
    assert pattern.match(value)
    assert not pattern.match(value + "\n")
