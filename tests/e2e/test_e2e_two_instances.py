"""Two broker processes on one Redis, behind one public URL: a login begun on one instance
finishes on the other, through the SAML and through the OIDC upstream, and the code issued by
one is redeemed at the other.  Each instance is a real `broker serve` (gunicorn) process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import pytest
import redis
import requests
from agent import Person
from authlib.integrations.requests_client import OAuth2Session

from broker.app import open_registry
from broker.demo.servers import free_port
from broker.demo.stack import DemoStack, Ports

REDIS_URL = os.environ.get("BROKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REDIRECT = "https://two.example.org/cb"


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    ports = Ports(*(free_port() for _ in range(5)))
    second = free_port()
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=ports, environ={})
    stack.prepare()
    _, secret, _ = open_registry(stack.settings()).register_client(
        {"client_id": "two-rp", "redirect_uris": [REDIRECT], "policy": {"scopes": ["openid", "roles"]}}, by="test")
    stack.start_idps()
    prefix = f"test-two:{secrets.token_hex(6)}:"   # this run's keys only; other tests share db 15
    env = {**os.environ, **stack.env(), "BROKER_REDIS_URL": REDIS_URL, "BROKER_REDIS_PREFIX": prefix,
           "BROKER_SECRET": secrets.token_urlsafe(32),
           "BROKER_LOG_LEVEL": "WARNING", "BROKER_METRICS_PORT": "0"}   # two instances: no shared metrics port
    processes, urls = [], []
    for port in (ports.broker, second):
        log = open(root / f"broker-{port}.log", "w")
        processes.append(subprocess.Popen([sys.executable, "-m", "broker", "serve", "--bind", f"127.0.0.1:{port}"],
                                          env=env, stdout=log, stderr=subprocess.STDOUT))
        urls.append(f"http://localhost:{port}")
    try:
        for url in urls:
            _wait(f"{url}/readyz", processes, root)
        yield stack, urls, secret
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        stack.stop()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)


def _wait(url, processes, root):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            logs = "\n".join(f.read_text()[-2000:] for f in root.glob("broker-*.log"))
            raise AssertionError(f"a broker process exited:\n{logs}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready")


@pytest.mark.redis
@pytest.mark.parametrize("hint,username,callback_path", [
    ("espoo/koulu", "teacher.espoo", "/saml2/acs/post"),
    ("espoo/entra", "pupil.espoo", "/oidc/espoo/entra/callback"),
])
def test_flow_begun_on_one_instance_finishes_on_the_other(instances, hint, username, callback_path):
    stack, (one, two), secret = instances
    meta = requests.get(f"{one}/.well-known/openid-configuration", timeout=5).json()
    assert meta["issuer"] == one, "both instances serve the same public issuer"
    session = OAuth2Session("two-rp", secret, scope="openid roles", redirect_uri=REDIRECT,
                            code_challenge_method="S256")
    verifier = secrets.token_urlsafe(48)
    url, _ = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                              nonce="n", idp_hint=hint)
    person = Person()
    response = person.get(url)                       # instance one: authorize, redirect upstream
    seen = []

    def to_second(target: str) -> str:             # the load balancer sends the callback elsewhere
        if target.startswith(one + callback_path):
            seen.append(target)
            return two + target[len(one):]
        return target

    person.rewrite = to_second
    callback = Person.callback(person.sign_in(response, username))
    assert seen, "the upstream's answer reached instance two"
    token_endpoint = meta["token_endpoint"].replace(one, two) if "saml" in callback_path else meta["token_endpoint"]
    token = session.fetch_token(token_endpoint, authorization_response=callback, code_verifier=verifier)
    userinfo = requests.get(f"{one}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"},
                            timeout=5).json()
    assert userinfo["roles"]
