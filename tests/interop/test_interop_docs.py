"""docs/services.md's "Set-ups that are tested" and tests/interop are one thing.

Every marked block is run by a test (the tests read the blocks from the page), and the Node.js
service the page shows is, byte for byte, the one tests/interop/openid-client/rp.mjs runs.
These checks need none of the software, so they run where the other tests skip.
"""

from __future__ import annotations

import re
from pathlib import Path

from interop_docs import blocks

HERE = Path(__file__).parent


def test_every_tested_block_is_read_by_a_test():
    sources = "\n".join(p.read_text() for p in HERE.glob("test_interop_*.py") if p.name != Path(__file__).name)
    names = set(blocks())
    assert names == {"whoami", "mod_auth_openidc", "mod_auth_mellon", "openid-client", "simplesamlphp-config",
                     "simplesamlphp-authsources", "simplesamlphp-app"}
    for name in names - {"openid-client"}:
        assert re.search(rf'snippet\(\s*"{re.escape(name)}"', sources), f"no test reads the {name} block"


def test_the_documented_node_service_is_the_one_tested():
    assert blocks()["openid-client"] == (HERE / "openid-client" / "rp.mjs").read_text()
