"""The identifiers and references the broker derives by HMAC stay what they were (``hmac.new`` as the reference).

Changing any of them would give every pupil a new ``user_id``, every service a new ``sub``
and every session a new ``sid``: the one-call ``hmac.digest`` must give the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

from broker.logs import user_reference
from broker.mapping.identifiers import stable_user_id, subject_for
from broker.sessions.model import BrokerSession

SALT = b"0123456789abcdef-salt"


@dataclasses.dataclass
class Policy:
    """A release policy as the identifiers read it (:class:`broker.mapping.model.PolicyLike`)."""

    subject_type: str = "pairwise"
    sector: str = ""
    profile: str = "digione"
    scopes: tuple[str, ...] = ()


def _reference(*parts: str) -> bytes:
    msg = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
    return hmac.new(SALT, msg, hashlib.sha256).digest()


def test_user_id_and_subjects_are_the_hmac_they_were():
    assert stable_user_id("vantaa", "koulu", "pupil-1", SALT) == \
        _reference("digione-user-v1", "vantaa", "koulu", "pupil-1").hex()
    identity = {"user_id": "u" * 64}
    pairwise = subject_for(identity, policy=Policy(), salt=SALT, sector="app.example.fi")
    assert pairwise == _reference("digione-pairwise-v1", "app.example.fi", "u" * 64)[:20].hex()
    public = subject_for(identity, policy=Policy(subject_type="public"), salt=SALT)
    assert public == _reference("digione-public-v1", "u" * 64)[:20].hex()


def test_log_reference_and_session_sid_are_the_hmac_they_were():
    assert user_reference("u1", SALT) == hmac.new(SALT, b"u1", hashlib.sha256).hexdigest()[:16]
    session = BrokerSession(id="i", secret="session-secret", user_id="u1", identity={}, idp="vantaa/koulu",
                            auth_info={}, auth_time=0, created=0, expires=1, idle_timeout=1, last_seen=0)
    mac = hmac.new(b"session-secret", b"oidc|client-a", hashlib.sha256).digest()
    assert session.sid_for("client-a", "oidc") == base64.urlsafe_b64encode(mac[:18]).decode()
