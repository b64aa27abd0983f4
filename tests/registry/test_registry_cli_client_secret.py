"""`broker clients add --client-secret`: a service moving from another broker keeps its secret.

The real command, on a registry database in a temporary folder: the secret is given on
standard input (``-``) or on the command line, only its SHA-256 is stored, it is never
printed, and a weak or misplaced one is refused without being shown.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tenant_data import Site, active_registry, saml_idp, tenant

from broker.settings import ROOT, Settings

MIGRATED = "Wm9tYmllLXNlY3JldC1mcm9tLXRoZS1vbGQtYnJva2Vy"


@pytest.fixture
def site(tmp_path) -> Site:
    site = Site(tmp_path)
    site.write_metadata()
    site.write_tenant(tenant("vantaa", saml_idp()))
    return site


def _add(site: Site, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", "clients", "add", "--client-id", "migrated",
                           "--redirect-uri", "https://app.example/cb", *args], env=site.env(), input=stdin,
                          capture_output=True, check=False, text=True, timeout=120, cwd=ROOT)


@pytest.mark.parametrize("how", ["stdin", "argument"])
def test_the_services_own_secret_is_kept_and_not_printed(site, how):
    result = _add(site, "--client-secret", "-", stdin=MIGRATED + "\n") if how == "stdin" else \
        _add(site, "--client-secret", MIGRATED)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["client_id"] == "migrated" and printed["client_secret_kept"] is True
    assert "client_secret" not in printed and MIGRATED not in result.stdout + result.stderr
    client = active_registry(Settings.from_env(site.env())).parties.clients["migrated"]
    assert client.check_secret(MIGRATED) and not client.check_secret(MIGRATED[:-1])


def test_without_the_option_a_secret_is_generated_and_shown_once(site):
    result = _add(site)
    assert result.returncode == 0, result.stderr
    secret = json.loads(result.stdout)["client_secret"]
    assert active_registry(Settings.from_env(site.env())).parties.clients["migrated"].check_secret(secret)


@pytest.mark.parametrize("args,stdin,expected", [
    (("--client-secret", "short-secret"), "", "--client-secret: expected 16 to 512 characters (got 12)"),
    (("--client-secret", "-"), "\n", "--client-secret: expected 16 to 512 characters (got 0)"),
    (("--client-secret", "a secret with spaces in it"), "", "--client-secret: expected no spaces or control"),
    (("--client-secret", MIGRATED, "--auth-method", "none"), "",
     "--client-secret: expected no secret with --auth-method none"),
])
def test_a_weak_or_misplaced_secret_is_refused_unshown(site, args, stdin, expected):
    result = _add(site, *args, stdin=stdin)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "short-secret" not in result.stderr and MIGRATED not in result.stderr
    listed = site.cli("clients", "list")
    assert listed.returncode == 0 and "migrated" not in listed.stdout
