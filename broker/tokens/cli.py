"""``broker keys …``: the token-signing key ring of the running brokers, from the operator's shell.

    broker keys list              the keys in the ring, as JSON (no key material)
    broker keys rotate            the pre-published next keys sign from now; new next keys are published
    broker keys rotate --force    the same before the next keys have been published for an hour

The ring is one document in the shared store, ``<BROKER_REDIS_PREFIX>tok:keyring`` in the
Redis of ``BROKER_REDIS_URL``, its private keys encrypted under the master secret
(:mod:`broker.tokens.keys`).  Both commands refuse (exit 2) when this shell cannot see the
ring the brokers use:

* without ``BROKER_REDIS_URL``: every broker process then keeps a ring of its own in
  memory, created when it starts, which no other process can read or change; listing or
  rotating a ring made for this command would show or change nothing a broker uses;
* when the store holds no ring under the prefix: the brokers create it when they start, so
  a missing ring means another Redis, database or prefix than theirs.  Nothing creates one
  here, so a mistyped prefix cannot leave a second ring behind;
* with another master secret than the brokers': the keys cannot be decrypted, and a
  rotation would encrypt new keys under a secret the brokers do not have.

A rotation that is refused (too early, or another process is changing the ring) changes
nothing and exits 1.  Every message says what would make the command succeed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from typing import TYPE_CHECKING, Any

from broker.settings import Settings
from broker.tokens.keys import KeyRing

if TYPE_CHECKING:
    from broker.store import Store

LIST_DESCRIPTION = """\
Print the key ring the running brokers sign tokens with, as JSON: each key's kid, algorithm,
state (next: published, not yet signing; active: signs; retiring: published until retire_at)
and times (epoch seconds). It reads the ring from the shared store: BROKER_REDIS_URL and
BROKER_REDIS_PREFIX must be the brokers', and so must the master secret (BROKER_SECRET or
BROKER_SECRET_FILE). Without BROKER_REDIS_URL it refuses (exit 2) rather than list keys made
up for this command: each broker process then holds its own keys in memory, out of reach."""

ROTATE_DESCRIPTION = """\
Promote each algorithm's next key (published in the JWKS, not yet signing) to active, keep
the previous active key published until every token it signed has expired, and publish a new
next key. Running brokers sign with the new keys within their refresh interval (30 s). It
refuses (exit 1, nothing changed) until the next keys have been published for the
pre-publication period (1 h), so relying parties that cache the JWKS know a key before they
see tokens signed with it; --force skips that wait. Like `broker keys list` it needs the
brokers' BROKER_REDIS_URL, BROKER_REDIS_PREFIX and master secret, and refuses (exit 2)
without BROKER_REDIS_URL: rotating the keys of a memory store changes nothing a running
broker uses."""


def add_commands(sub: Any) -> None:
    """Add the ``keys`` command group to the ``broker`` parser."""
    keys = sub.add_parser("keys", help="token-signing keys: list, rotate (the brokers' shared key ring in Redis)")
    actions = keys.add_subparsers(metavar="ACTION")
    p = actions.add_parser("list", help="print the brokers' signing keys and their states (JSON; needs "
                                        "BROKER_REDIS_URL)", description=LIST_DESCRIPTION)
    p.set_defaults(handler=_keys_list)
    p = actions.add_parser("rotate", help="the pre-published next keys sign from now; publish new next keys "
                                          "(needs BROKER_REDIS_URL)", description=ROTATE_DESCRIPTION)
    p.add_argument("--force", action="store_true",
                   help="rotate even if the next keys have been published for less than the pre-publication "
                        "period: relying parties whose cached JWKS predates them fail to verify new tokens "
                        "until they fetch the JWKS again")
    p.set_defaults(handler=_keys_rotate)


class _Refused(Exception):
    """The command cannot do its job; the message says why and what would make it succeed."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _keys_list(args: argparse.Namespace) -> int:
    from broker.store import StoreError

    settings = Settings.from_env()
    try:
        ring, store = _brokers_ring(settings, "list")
        try:
            keys = ring.describe()
        finally:
            store.close()
    except _Refused as exc:
        return _refuse(str(exc), exc.code)
    except StoreError as exc:
        return _refuse(f"the store at {_location(settings)} cannot be read ({exc}); check BROKER_REDIS_URL", 1)
    print(json.dumps(keys, indent=2))
    signing = ", ".join(f"{k['alg']} kid {k['kid']}" for k in keys if k["state"] == "active")
    print(f"the key ring {_location(settings)}: {len(keys)} keys; signing now: {signing}", file=sys.stderr)
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from broker.store import StoreError
    from broker.tokens.keys import KeyRingBusy, RotationTooEarly

    settings = Settings.from_env()
    try:
        ring, store = _brokers_ring(settings, "rotate")
        try:
            # Decrypting the active keys first proves the master secret is the brokers':
            # a rotation under another secret would leave keys they cannot decrypt.
            before = ring.describe()
            after = ring.rotate(force=args.force)
        finally:
            store.close()
    except _Refused as exc:
        return _refuse(str(exc), exc.code)
    except RotationTooEarly as exc:
        return _refuse(_too_early(exc), 1)
    except KeyRingBusy:
        return _refuse(f"nothing rotated: another process is changing the key ring {_location(settings)} right "
                       "now (it holds the ring's lock, which expires within 60 s). Run `broker keys rotate` "
                       "again in a minute.", 1)
    except StoreError as exc:
        return _refuse(f"the store at {_location(settings)} failed ({exc}); the rotation may not have been "
                       "written: `broker keys list` shows the ring as it is", 1)
    print(json.dumps(after, indent=2))
    print(_rotated(settings, before, after, prepublish=ring.prepublish, refresh=ring.refresh_interval,
                   forced=args.force), file=sys.stderr)
    return 0


def _brokers_ring(settings: Settings, action: str) -> tuple[KeyRing, Store]:
    """The ring the running brokers use, and its store; :class:`_Refused` when this shell cannot see it."""
    from broker.store import open_store
    from broker.tokens.keys import RING_KEY, KeyRingError

    if not settings.redis_url:
        if action == "list":
            consequence = "a listing here would show keys made up for this command and thrown away after it"
        else:
            consequence = ("rotating the keys of a memory store changes nothing a running broker uses (to replace "
                           "the keys of a broker without Redis, restart it: it makes new ones at start, and "
                           "tokens signed before stop verifying)")
        raise _Refused(f"BROKER_REDIS_URL is not set, so there is no shared key ring to {action}: without it each "
                       f"broker process keeps its signing keys in its own memory, out of this command's reach, "
                       f"and {consequence}. Set BROKER_REDIS_URL (and BROKER_REDIS_PREFIX, if they set one) to "
                       f"the running brokers' values, with their master secret (BROKER_SECRET or "
                       f"BROKER_SECRET_FILE), and run `broker keys {action}` again.", 2)
    store = open_store(settings.redis_url, prefix=settings.redis_prefix)
    try:
        if store.get(RING_KEY) is None:
            raise _Refused(f"no key ring {_location(settings)}: the brokers create it when they start, so this "
                           "is not the Redis or the prefix they use. Set BROKER_REDIS_URL and BROKER_REDIS_PREFIX "
                           "to the running brokers' values (nothing was created).", 2)
        ring = KeyRing(store, settings.master_secret)
        try:
            ring.refresh()
        except KeyRingError as exc:
            raise _Refused(f"{exc}: this shell's master secret is not the brokers'. Set BROKER_SECRET or "
                           f"BROKER_SECRET_FILE to theirs (without either, it is {settings.keys_dir}/master.secret)"
                           "; nothing was changed.", 2) from None
    except BaseException:
        store.close()
        raise
    return ring, store


def _too_early(exc: Any) -> str:
    """What a refused rotation means, when it will succeed, and what ``--force`` costs."""
    keys = " and ".join(f"the next {alg} key (kid {kid}) has been published for {_duration(age)}"
                        for alg, kid, age in exc.waiting)
    wait = max(0.0, exc.ready_at - dt.datetime.now(dt.UTC).timestamp())
    return (f"nothing rotated: {keys}; a next key must be published in the JWKS for "
            f"{_duration(exc.prepublish)} before it signs, so that relying parties that cache the JWKS know it "
            f"before they see tokens signed with it.\n"
            f"  To rotate safely: run `broker keys rotate` again from {_when(exc.ready_at)} (in {_duration(wait)}).\n"
            f"  To rotate now: `broker keys rotate --force`; relying parties whose cached JWKS predates the new "
            f"key then fail to verify the tokens it signs until they fetch the JWKS again.")


def _rotated(settings: Settings, before: list[dict[str, Any]], after: list[dict[str, Any]], *,
             prepublish: float, refresh: float, forced: bool) -> str:
    """What a rotation did, per algorithm, and what to do next."""
    lines = [f"rotated the key ring {_location(settings)}:"]
    was_active = {k["alg"]: k for k in before if k["state"] == "active"}
    was_next = {k["kid"]: k for k in before if k["state"] == "next"}
    for alg in dict.fromkeys(k["alg"] for k in after):
        active = next(k for k in after if k["alg"] == alg and k["state"] == "active")
        nxt = next(k for k in after if k["alg"] == alg and k["state"] == "next")
        old = was_active.get(alg)
        if old is not None and old["kid"] != active["kid"]:
            published = was_next.get(active["kid"], active)["created"]
            retire_at = next(k["retire_at"] for k in after if k["kid"] == old["kid"])
            line = (f"  {alg}: kid {active['kid']} signs new tokens now (published since {_when(published)}); "
                    f"kid {old['kid']} no longer signs and stays in the JWKS until {_when(retire_at)}, so the "
                    "tokens it signed keep verifying; ")
        else:
            line = f"  {alg}: kid {active['kid']} still signs (there was no next key to promote); "
        lines.append(line + f"kid {nxt['kid']} is the new next key, published from now.")
    if forced:
        lines.append(f"  forced: a key published for less than {_duration(prepublish)} may now sign; relying parties "
                     "whose cached JWKS predates it fail to verify its tokens until they fetch the JWKS again.")
    ready = max(k["created"] for k in after if k["state"] == "next") + prepublish
    lines.append(f"Running brokers sign with the new keys within {_duration(refresh)} (each re-reads the ring that "
                 f"often). The next rotation can run from {_when(ready)}; `broker keys list` shows the ring.")
    return "\n".join(lines)


def _location(settings: Settings) -> str:
    """Where the ring is: its store key and the Redis URL without its password."""
    from broker.tokens.keys import RING_KEY

    url = re.sub(r"(//[^:/@]*):[^@/]*@", r"\1:***@", settings.redis_url or "")
    return f"{settings.redis_prefix}{RING_KEY} in {url}"


def _when(epoch: float) -> str:
    return f"{dt.datetime.fromtimestamp(epoch, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _duration(seconds: float) -> str:
    """``59 min 59 s``, ``1 h``, ``0 s``: a wait an operator reads at a glance."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"


def _refuse(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
