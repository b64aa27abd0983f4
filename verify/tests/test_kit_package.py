"""The kit as services get it: ``pip install ./verify``, then imported where no broker exists.

Built and installed by pip from a copy of ``verify/`` (its own ``pyproject.toml``), then run
by an interpreter that does not process site-packages ``.pth`` files (so neither the broker
nor the repository's editable copy of the kit is on its path) and that refuses to import
``broker``: it verifies a token, roles and schools included.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1]
SOURCE = KIT / "src" / "digione_verify"


def test_the_kit_imports_only_the_standard_library_and_cryptography():
    """Every import of every module, top level or not; Flask only inside ``require_token``."""
    allowed = set(sys.stdlib_module_names) | {"cryptography", "digione_verify"}
    for path in sorted(SOURCE.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "flask":
                    assert path.name == "service.py" and node.col_offset > 0, f"{path.name}: flask at top level"
                    continue
                assert top in allowed, f"{path.name} imports {name}"


def test_modules_stay_small():
    for path in SOURCE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name


CHECK = r'''
import importlib.abc, json, sys, time
class NoBroker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "broker" or name.startswith("broker."):
            raise ImportError("the kit must not need the broker")
        return None
sys.meta_path.insert(0, NoBroker())
sys.path[:0] = [sys.argv[1], sys.argv[2]]

import digione_verify
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from digione_verify import TokenVerifier, WrongSchool, b64url_encode

key = ec.generate_private_key(ec.SECP256R1())
n = key.public_key().public_numbers()
jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": b64url_encode(n.x.to_bytes(32, "big")),
                  "y": b64url_encode(n.y.to_bytes(32, "big"))}]}
now = int(time.time())
claims = {"iss": "https://login.example.fi", "sub": "s", "aud": "svc", "client_id": "svc", "scope": "openid roles",
          "iat": now, "exp": now + 60, "jti": "j", "roles": ["teacher"],
          "role_assignments": [{"role": "teacher", "code": 2, "school": "03083"}]}
signing_input = (b64url_encode(json.dumps({"alg": "ES256", "kid": "k", "typ": "at+jwt"}).encode()) + "."
                 + b64url_encode(json.dumps(claims).encode())).encode()
r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
token = signing_input.decode() + "." + b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
verifier = TokenVerifier("https://login.example.fi", "svc", jwks_uri="https://login.example.fi/jwks",
                         http_get=lambda url: json.dumps(jwks).encode())
assert verifier.verify(token, roles=("teacher",), schools=("03083",))["sub"] == "s"
try:
    verifier.verify(token, roles=("teacher",), schools=("03084",))
    raise SystemExit("a teacher elsewhere passed")
except WrongSchool:
    pass
print(json.dumps({"file": digione_verify.__file__, "version": digione_verify.__version__,
                  "foreign": sorted(m for m in sys.modules if m.split(".")[0] in ("broker", "flask", "satosa"))}))
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install --target`` of a clean copy of ``verify/``: the files a service gets."""
    root = tmp_path_factory.mktemp("kit")
    copy = root / "verify"
    shutil.copytree(KIT, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    target = root / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                             "--disable-pip-version-check", "--target", str(target), str(copy)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return target


def test_pip_installs_the_kit_alone(installed):
    top = {p.name for p in installed.iterdir()}
    assert "digione_verify" in top and not {"broker", "digione_broker"} & top, top
    dist = next(installed.glob("digione_verify-*.dist-info"))
    metadata = (dist / "METADATA").read_text()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires == ["Requires-Dist: cryptography>=42", 'Requires-Dist: flask>=3.0; extra == "flask"'], requires
    assert (installed / "digione_verify" / "py.typed").exists()


def test_the_installed_kit_verifies_roles_and_schools_without_the_broker(installed):
    import cryptography

    site = Path(cryptography.__file__).resolve().parents[1]   # cryptography and cffi, without .pth hooks
    result = subprocess.run([sys.executable, "-I", "-S", "-c", CHECK, str(installed), str(site)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["file"].startswith(str(installed)), out   # the installed copy, not the repository's
    assert out["foreign"] == [] and out["version"] == "1.0.0"
