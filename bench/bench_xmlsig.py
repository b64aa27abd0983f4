"""Micro-benchmark: CPU per SAML response through pysaml2 with the in-process signature plugin.

pysaml2 entities (the broker's SAML IdP frontend, the demo IdPs) sign and verify through
``broker.saml.pysaml2_crypto``; the broker's own ACS uses the one-pass processor
(``bench/bench_login.py`` measures that).  The xmlsec1 subprocess path this benchmark once
compared against was removed (decision 9; the figures are in decision 3).

    .venv/bin/python bench/bench_xmlsig.py [-n 300] [--json]

A real pysaml2 IdP (``saml2.server.Server``) signs responses (Response and
Assertion signed, as most IdPs are configured; then the same with the assertion
encrypted), and the broker's SP (``saml2.client.Saml2Client``) consumes them
with each backend:

* ``crypto`` — the backend alone: ``validate_signature`` for the Response and
  for the Assertion, with the IdP certificate;
* ``verify`` — the signature work pysaml2 does per response: the Response
  signature (``correctly_signed_response``) and the Assertion signature
  (``check_signature``), schema validation included, as in ``_check_signature``;
* ``acs`` — the whole ``parse_authn_request_response`` an ACS request runs
  (base64, parsing, decryption, both signatures, conditions, attributes).

Backends: ``in-process`` (default: libxml2 schema validation of pysaml2's
re-serialized item), ``in-proc/node`` (``schema_validation="signed-node"``),
``in-proc/xsd`` (pysaml2's xmlschema validator).

CPU time is user + system of this process and of its children, from ``getrusage``;
wall time is shown for reference.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "saml")]
warnings.filterwarnings("ignore", message=".*CFB has been moved")  # pysaml2 on new cryptography, at import

from saml2 import class_name, samlp  # noqa: E402 - after the sys.path set-up above
from xmlsig_helpers.peers import make_peers  # noqa: E402 - after the sys.path set-up above

from broker.saml.pysaml2_crypto import configure_signatures  # noqa: E402 - after the sys.path set-up above


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Spawns:
    count = 0
    armed = False

    @classmethod
    def hook(cls, event, _args):
        if cls.armed and event == "subprocess.Popen":
            cls.count += 1


def measure(operation, iterations: int) -> dict[str, float]:
    operation()  # warm caches (keys, schema) outside the measurement
    _Spawns.count, _Spawns.armed = 0, True
    cpu, wall = _cpu_seconds(), time.perf_counter()
    for _ in range(iterations):
        operation()
    cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    _Spawns.armed = False
    return {"cpu_ms": 1000 * cpu / iterations, "wall_ms": 1000 * wall / iterations,
            "processes": _Spawns.count / iterations}


def scenarios(directory: Path, encrypted: bool):
    directory.mkdir()
    peers = make_peers(directory, want_response_signed=True, want_assertions_signed=True, encryption=encrypted)
    configure_signatures(peers.idp)
    xml = peers.response_xml(sign_response=True, sign_assertion=True, encrypt_assertion=encrypted)
    return peers, xml


def crypto_only(peers, xml: str):
    """The backend's two ``validate_signature`` calls, without pysaml2 around them."""
    crypto = peers.sp.sec.crypto
    response = samlp.response_from_string(xml)
    cert = peers.idp_keys.cert_file if crypto.__class__.__name__ == "CryptoBackendXmlSec1" else peers.idp_keys.cert_pem
    nodes = [(class_name(response), response.id), (class_name(response.assertion[0]), response.assertion[0].id)]

    def run():
        for node_name, node_id in nodes:
            assert crypto.validate_signature(xml, cert, "pem", node_name, node_id)

    return run


def verify_only(peers, xml: str):
    """The two signature checks pysaml2 makes for a response signed at both levels (clear text only)."""
    sec = peers.sp.sec
    response = samlp.response_from_string(xml)
    assertion = response.assertion[0]

    def run():
        sec.correctly_signed_response(xml)
        sec.check_signature(assertion, class_name(assertion), xml)

    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--iterations", type=int, default=300, help="responses per measurement")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    sys.addaudithook(_Spawns.hook)

    backends = {"in-process": ("in-process", "libxml2"), "in-proc/node": ("in-process", "signed-node"),
                "in-proc/xsd": ("in-process", "xmlschema")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for encrypted in (False, True):
            peers, xml = scenarios(Path(tmp) / ("enc" if encrypted else "clear"), encrypted)
            label = "signed+encrypted" if encrypted else "signed"
            for backend, (_, schema_validation) in backends.items():
                options = {"schema_validation": schema_validation} if schema_validation else {}
                configure_signatures(peers.sp, **options)
                n = args.iterations
                if not encrypted:
                    results.append({"response": label, "what": "crypto", "backend": backend, "n": n,
                                    **measure(crypto_only(peers, xml), n)})
                    results.append({"response": label, "what": "verify", "backend": backend, "n": n,
                                    **measure(verify_only(peers, xml), n)})
                results.append({"response": label, "what": "acs", "backend": backend, "n": n,
                                **measure(functools.partial(peers.parse, xml), n)})

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'response':<18}{'what':<8}{'backend':<14}{'cpu ms':>9}{'wall ms':>9}{'procs':>7}{'n':>6}")
    for row in results:
        print(f"{row['response']:<18}{row['what']:<8}{row['backend']:<14}{row['cpu_ms']:>9.2f}"
              f"{row['wall_ms']:>9.2f}{row['processes']:>7.1f}{row['n']:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
