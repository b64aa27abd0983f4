"""The three rate limits, counted in the shared store, and their refusals.

Counting
--------
Fixed windows aligned on the clock (``index = now // window``): ``INCRBY`` (with
``EXPIRE NX``, :meth:`broker.store.Store.incr`) of ``rl:<who>:<index>``, one round trip,
O(1), a key that expires just after its window.  Login starts and token requests are sent
in steps of up to a thousandth of their limit (:mod:`broker.ratelimit.tally`: most login
starts cost no round trip, a limit is overshot by at most ``step - 1`` per process, and a
limit under 2,000 is counted exactly); wrong secrets are sent one by one.  A client's keys are
hash-tagged with its id (``rl:{client}:token:…``, ``rl:{client}:auth:…``): its lock check and
its token count go in one round trip (:meth:`broker.store.Store.incr_and_get`), one slot on
Redis Cluster.  Every instance counts in
the same key and agrees on the window's end, so ``Retry-After`` is the seconds until it
(rounded up, at least 1), with no second command.  A fixed window lets a burst of up to
twice the count through around a boundary; the limits are sized for that (ADR 0018).

The limits
----------
``login_start``
    login starts per source address (:mod:`broker.ratelimit.source`), counted before the
    request is parsed (a forged SAML request costs a signature check).  **Fails open**: a
    store that cannot count never stops a pupil's login (the login then meets the store
    on its own and answers for itself).  Refused with a localized page.
``token``
    token endpoint requests per authenticated client (registered ids only: the keys are
    bounded).  Counted after authentication, so nobody can spend a service's budget by
    naming it.  **Fails open**, like the login it ends (except where it shares the round
    trip of the lock check below, which fails closed).
``client_auth_failures``
    wrong client secrets per registered client and source (``client_secret_basic``,
    ``client_secret_post``; signed assertions cannot be guessed).  Once over the count, that
    client is refused from that source until the window ends, **with the right secret
    too**: otherwise the one answer that is not 429 would reveal the secret.  Other
    sources (the service's own servers) are not affected.  **Fails closed**: if the
    store cannot say whether the pair is locked, the request is answered 503
    ``temporarily_unavailable`` (every grant needs the store anyway).

Refusals are answered 429 with ``Retry-After``; each is counted once through
:func:`_count_refusal`.  Log lines name the client id (a service, not a person) and the
source only by its keyed name.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

from broker import metrics
from broker.errors import BrokerError
from broker.ratelimit.config import Limit, RateLimits
from broker.ratelimit.source import Sources
from broker.ratelimit.tally import Tally, step_for
from broker.store import Store, StoreError
from broker.tokens.errors import OAuthError

logger = logging.getLogger("broker.ratelimit")

#: Seconds between two "could not count" warnings of one process while the store is away.
_WARN_EVERY = 10.0


class LoginStartsLimited(BrokerError):
    """Too many login starts from one source: a localized page for the person."""

    status = 429
    code = "temporarily_unavailable"
    message_key = "error.rate_limited"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = (("Retry-After", str(retry_after)),)


def limited(description: str, retry_after: int) -> OAuthError:
    """A machine endpoint's refusal: 429 ``temporarily_unavailable`` with ``Retry-After``.

    RFC 6749 defines no rate-limit error for the token endpoint; ``slow_down`` (RFC 8628
    §3.5) tells a *device-flow poller* to add 5 s to its interval and means nothing else
    to a client library, while ``temporarily_unavailable`` (RFC 6749 §4.1.2.1: "temporary
    overloading") is what libraries already treat as "try again later".  The status
    (429, RFC 6585 §4) and ``Retry-After`` (RFC 9110 §10.2.3) say how much later.
    """
    error = OAuthError("temporarily_unavailable", description, status=429)
    error.headers = (("Retry-After", str(retry_after)),)
    return error


def _locked(client_id: str, wait: int) -> OAuthError:
    """The answer to a client locked from a source, whatever secret it sent this time."""
    _count_refusal("client_auth")
    return limited(f"too many failed authentications of client {client_id} from this source; "
                   f"retry after {wait} s", wait)


class LockGate:
    """A client's lock from one source, not read yet: read beside a grant's take, or by :meth:`settle`.

    The lock must be judged before *any* other answer to the request: a ``400`` or a token
    where a locked client should get ``429`` would tell a guesser that its secret was right.
    """

    def __init__(self, store: Store, key: str, limit: int, client_id: str, wait: int):
        self.store, self.key, self._limit, self._client_id, self._wait = store, key, limit, client_id, wait
        self.settled = False

    def check(self, failures: object) -> None:
        """Judge the lock on ``failures``, the value read under :attr:`key`: 429 while locked."""
        self.settled = True
        if isinstance(failures, int) and failures > self._limit:
            raise _locked(self._client_id, self._wait)

    def settle(self) -> None:
        """Read and judge the lock now, unless that was done (fails closed: a StoreError propagates)."""
        if not self.settled:
            self.check(self.store.get(self.key))


def _too_many_tokens(client_id: str, limit: Limit, wait: int) -> OAuthError:
    _count_refusal("token")
    return limited(f"client {client_id} is over {limit.count} token requests per {limit.window} s; "
                   f"retry after {wait} s", wait)


def _count_refusal(kind: str) -> None:
    """Count one refusal (``token``, ``client_auth``, ``login_start``) in the metrics."""
    metrics.rate_limited(kind)


class RateLimiter:
    """The limits of one deployment over its store.

    Each built login path (each registry version) has its own; the counts live in the store,
    so a rebuild, like another instance, carries on with them.
    """

    def __init__(self, store: Store, limits: RateLimits, sources: Sources, *,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.limits = limits
        self.sources = sources
        self.clock = clock
        self._warned = 0.0
        # Login starts and token requests are sent to the store in steps (broker.ratelimit.tally).
        self._starts, self._tokens = Tally(), Tally()

    # -- the limits --------------------------------------------------------------------------

    def login_start(self, environ: Mapping[str, object]) -> None:
        """Count a login start from the request's source; raise :class:`LoginStartsLimited` when over."""
        limit = self.limits.login_start
        if not limit.enabled:
            return
        address = self.sources.of_environ(environ)
        if not address or self.sources.exempt(address):
            return
        source = self.sources.name(address)
        key, wait, window = self._key(f"login:{source}", limit)
        count = self._count(self._starts, key, window, limit, wait, "login_start")
        if count is not None and count > limit.count:
            _count_refusal("login_start")
            raise LoginStartsLimited(f"login starts from source {source} over {limit.count} per {limit.window} s",
                                     wait)

    def authenticated(self, client_id: str, *, secret: bool, token: bool, remote_addr: str | None,
                      forwarded_for: str | None, defer_lock: bool = False) -> LockGate | None:
        """A client authenticated: refuse it (429) while locked from this source, count its token request.

        ``secret``: it proved itself with a client secret (the brute-forceable methods);
        ``token``: at the token endpoint.  The lock check fails closed (a :class:`StoreError`
        propagates: 503); a token count alone fails open.  With both, one round trip.

        ``defer_lock``: when no count is due, the lock is not read here but handed back as a
        :class:`LockGate`, for the grant to read beside the code or refresh token it takes
        (one round trip saved); the caller must :meth:`LockGate.settle` it before any answer.
        """
        auth, per_client = self.limits.client_auth_failures, self.limits.token
        if not (secret and auth.enabled):
            if token:
                self._token(client_id)
            return None
        auth_key, auth_wait = self._auth_key(client_id, remote_addr, forwarded_for, auth)
        count, to_send, token_key, token_wait = 0, 0, "", 0
        if token and per_client.enabled:
            token_key, token_wait, window = self._key(f"{{{client_id}}}:token", per_client)
            to_send, count = self._tokens.add(token_key, window, step_for(per_client.count))
        gate = LockGate(self.store, auth_key, auth.count, client_id, auth_wait)
        if to_send:
            try:
                count, failures = self.store.incr_and_get(token_key, token_wait + 1, auth_key, to_send)
            except StoreError:
                self._tokens.unsent(token_key, to_send)
                raise   # the lock check fails closed
            self._tokens.sent(token_key, count)
            gate.check(failures)
        elif not defer_lock:
            gate.settle()
        if count > per_client.count:
            gate.settle()   # locked or not, this one is over its count: the lock's answer first
            raise _too_many_tokens(client_id, per_client, token_wait)
        return None if gate.settled else gate

    def failed_secret(self, client_id: str, remote_addr: str | None, forwarded_for: str | None) -> None:
        """Count a wrong secret of ``client_id`` from this source; raise a 429 once over the count.

        Fails closed: a :class:`StoreError` propagates (the endpoint answers 503).
        """
        limit = self.limits.client_auth_failures
        if not limit.enabled:
            return
        key, wait = self._auth_key(client_id, remote_addr, forwarded_for, limit)
        if self.store.incr(key, wait + 1) > limit.count:   # exact: every wrong secret is sent at once
            raise _locked(client_id, wait)

    def _token(self, client_id: str) -> None:
        limit = self.limits.token
        if not limit.enabled:
            return
        key, wait, window = self._key(f"{{{client_id}}}:token", limit)
        count = self._count(self._tokens, key, window, limit, wait, "token")
        if count is not None and count > limit.count:
            raise _too_many_tokens(client_id, limit, wait)

    def _auth_key(self, client_id: str, remote_addr: str | None, forwarded_for: str | None,
                  limit: Limit) -> tuple[str, int]:
        """The wrong-secret counter of ``client_id`` from this source.

        Under the client's hash tag, so it shares a slot with the client's token count.
        """
        source = self.sources.name(self.sources.address(remote_addr, forwarded_for))
        key, wait, _ = self._key(f"{{{client_id}}}:auth:{source}", limit)
        return key, wait

    # -- counting ----------------------------------------------------------------------------

    def _key(self, who: str, limit: Limit) -> tuple[str, int, int]:
        """The counter of ``who`` in the current window, the seconds until the window ends (at least 1),
        and the window's number."""
        now = self.clock()
        index = int(now // limit.window)
        return f"rl:{who}:{index}", max(1, math.ceil((index + 1) * limit.window - now)), index

    def _count(self, tally: Tally, key: str, window: int, limit: Limit, wait: int, kind: str) -> int | None:
        """One event of ``key`` counted through ``tally``: the count as known now, ``None`` if the store
        could not count it (the limits that call this fail open)."""
        to_send, seen = tally.add(key, window, step_for(limit.count))
        if not to_send:
            return seen
        try:
            total = self.store.incr(key, wait + 1, to_send)
        except StoreError as exc:
            tally.unsent(key, to_send)
            self._not_counted(kind, exc)
            return None
        tally.sent(key, total)
        return total

    def _not_counted(self, kind: str, exc: StoreError) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            logger.warning("rate limit not counted, request let through limit=%s error=%s", kind,
                           exc.__class__.__name__)
