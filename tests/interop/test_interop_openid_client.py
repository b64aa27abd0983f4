"""panva's openid-client (npm, Node.js) signs people in through the broker with the service of
docs/services.md (tests/interop/openid-client/rp.mjs), and reads the claims.

The test installs the locked packages (``npm ci``, into the ignored node_modules/) when they
are missing, registers the service, runs ``node rp.mjs`` on a loopback port and signs a demo
teacher and pupil in through a city's Entra-shaped OIDC IdP.  openid-client verifies the ID
token (signature against the broker's JWKS, iss, aud, nonce), PKCE and state itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from agent import Person, register_client

from broker.demo.servers import free_port

RP_DIR = Path(__file__).parent / "openid-client"
NODE, NPM = shutil.which("node"), shutil.which("npm")

pytestmark = pytest.mark.skipif(not (NODE and NPM), reason="node and npm are not on PATH (Node.js 20 or newer)")


def _install() -> None:
    """``npm ci`` from the committed package-lock.json, unless node_modules is already there."""
    if (RP_DIR / "node_modules" / "openid-client" / "package.json").exists():
        return
    subprocess.run([str(NPM), "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=RP_DIR, check=True,
                   timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def node_rp(stack):
    _install()
    port = free_port()
    url = f"http://localhost:{port}"
    _, secret = register_client(stack, client_id="my-node-app", name="openid-client",
                                redirect_uris=[f"{url}/callback"],
                                policy={"scopes": ["openid", "roles", "schools", "profile"]})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DIGIONE_ISSUER": stack.broker_url,
           "CLIENT_ID": "my-node-app", "CLIENT_SECRET": secret or "", "REDIRECT_URI": f"{url}/callback",
           "PORT": str(port)}
    process = subprocess.Popen([str(NODE), "rp.mjs"], cwd=RP_DIR, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"node rp.mjs exited with {process.returncode}: "
                                   f"{process.stdout.read().decode(errors='replace') if process.stdout else ''}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("node rp.mjs did not listen in 15 s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout:
            process.stdout.close()


def _sign_in(url: str, tenant: str, idp: str, username: str) -> dict:
    session = requests.Session()
    session.trust_env = False
    response = Person(session, stop_at=()).login(f"{url}/login", tenant, idp, username)
    assert response.status_code == 200, (response.status_code, response.text[:500])
    got = response.json()
    print(json.dumps(got, indent=1, ensure_ascii=False))
    return got


def test_teacher_through_an_oidc_upstream(node_rp):
    got = _sign_in(node_rp, "vantaa", "entra", "teacher.vantaa")
    claims = got["claims"]
    assert claims["roles"] == ["teacher"]  # teacher in two schools: the name once
    assert got["teacher"] is True
    assert [(a["role"], a["school"]) for a in claims["role_assignments"]] == [("teacher", "90921"),
                                                                             ("teacher", "90922")]
    assert {s["code"] for s in claims["schools"]} == {"90921", "90922"}
    assert claims["given_name"] == "Mikko Juhani" and claims["family_name"] == "Korhonen"
    assert got["userinfo"]["sub"] == claims["sub"] and got["userinfo"]["roles"] == ["teacher"]


def test_pupil_through_a_saml_upstream(node_rp):
    got = _sign_in(node_rp, "espoo", "koulu", "pupil.espoo")
    assert got["claims"]["roles"] == ["learner"]
    assert got["teacher"] is False
    assert [s["code"] for s in got["claims"]["schools"]] == ["90491"]
