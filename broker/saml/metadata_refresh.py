"""IdP metadata named by URL, kept current in the background.

A city that names its IdP's metadata by URL (``metadata: {url, signing_cert_sha256}``)
may change it at any time: a new signing certificate ahead of a rollover, a new
endpoint, a new ``validUntil``.  :class:`MetadataRefresher` fetches each document again
when it is due and tells its caller when a document the proxy uses has changed, so
that the caller rebuilds the proxy.  Nothing here runs on the login path: the
refresher runs on a background thread (:class:`MetadataRefreshThread`, or the
registry watcher's), and a build reads the result from the store
(:func:`current_document`, through :func:`broker.saml.metadata.pinned_metadata`).

When a document is due
    After a successful fetch, after its ``cacheDuration`` (SAML Metadata §2.2.1; the
    shortest of the document element's and the IDPSSODescriptor's), else after
    :attr:`RefreshPolicy.default_interval`, bounded by ``min_interval`` and
    ``max_interval``, and no later than ``min_interval`` before its ``validUntil``.  After
    a failed fetch, after a backoff that doubles from ``min_interval`` up to
    ``backoff_max``.

What is accepted
    Only a document signed with a certificate one of the tenant's pins names, not
    expired, and passing the checks a metadata file gets (the tenant's entityID, one
    IDPSSODescriptor, pysaml2's parse): :func:`broker.saml.metadata.check_pinned`.
    Anything else (unsigned, tampered with, signed with another key, expired, not the
    tenant's entity) is refused and logged, and the last good copy stays in use while
    its ``validUntil`` allows; an expired document is never kept in use.

Shared by every instance (the store)
    ``saml:{metadata}:<h>``: the last good copy (a week at most, never past its
    ``validUntil``); ``saml:{metadata}:schedule:<h>``: when it is due next, the failures in
    a row and the copy's digest; ``saml:{metadata}:claim:<h>``: which instance is fetching
    now (:meth:`Store.add`, a short lease).  ``<h>`` is the SHA-256 of the URL.  One
    instance fetches a due document; the others see the new digest in the schedule and
    rebuild from the copy.  A tick of the refresher is one ``get_many`` for all the
    schedules, plus O(1) store calls for each document that is due or has changed.

A city's own CA (``metadata: {url, …, ca_file}``)
    The document is fetched over a session trusting that CA file only
    (:func:`broker.backends.trust.session_for`), and ``<h>`` then covers the CA file's digest
    too, so the copy and schedule are that city's own.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from broker.backends.trust import ca_key, session_for
from broker.saml.metadata import (
    _MAX_BYTES,
    CACHE_KEY,
    CACHE_TTL,
    MetadataRejected,
    MetadataUnavailable,
    PinnedDocument,
    check_pinned,
)
from broker.store import Store, StoreError

if TYPE_CHECKING:
    from broker.registry.tenants import Tenants

logger = logging.getLogger(__name__)

SCHEDULE_KEY = "saml:{metadata}:schedule:"   # the {metadata} hash tag: get_many over sources is one slot
CLAIM_KEY = "saml:{metadata}:claim:"
_ACCEPT = "application/samlmetadata+xml, application/xml;q=0.9, */*;q=0.1"


@dataclasses.dataclass(frozen=True)
class RefreshPolicy:
    """How often documents are fetched, in seconds."""

    default_interval: float = 3600.0     # without a cacheDuration
    min_interval: float = 300.0          # never sooner than this after a fetch (whatever cacheDuration says)
    max_interval: float = 86400.0        # never later than this after a successful fetch
    backoff_max: float = 3600.0          # after failures: min_interval, twice that, ... up to this
    lease: float = 60.0                  # how long one instance's claim on a fetch holds the others off
    timeout: float = 10.0                # connect / read timeout of one fetch
    total_timeout: float = 30.0          # the whole body must arrive within this

    def interval(self, cache_duration: float | None) -> float:
        """Seconds from a successful fetch to the next one."""
        wanted = self.default_interval if cache_duration is None else cache_duration
        return min(max(wanted, self.min_interval), self.max_interval)

    def backoff(self, failures: int) -> float:
        """Seconds from the ``failures``-th failure in a row to the next attempt."""
        return min(self.min_interval * 2 ** max(failures - 1, 0), self.backoff_max)


DEFAULT_POLICY = RefreshPolicy()


@dataclasses.dataclass(frozen=True)
class PinnedSource:
    """One IdP's metadata by URL: where, the pins, the entity it must describe."""

    idp: str                             # "<tenant>/<idp>"
    url: str
    pins: tuple[str, ...]
    entity_id: str | None = None
    #: The city's CA file for this URL (:class:`~broker.registry.tenant_model.CaFile`); None: the public CAs.
    ca_file: Any = None

    @property
    def hash(self) -> str:
        return hashlib.sha256((self.url + ca_key(self.ca_file)).encode()).hexdigest()

    @property
    def copy_key(self) -> str:
        return CACHE_KEY + self.hash

    @property
    def schedule_key(self) -> str:
        return SCHEDULE_KEY + self.hash

    @property
    def claim_key(self) -> str:
        return CLAIM_KEY + self.hash


@dataclasses.dataclass(frozen=True)
class SourceStatus:
    """What the refresher knows of one document (for a console or metrics)."""

    idp: str
    url: str                             # without query or credentials
    next_refresh_at: float | None        # POSIX seconds; None: due now
    failures: int                        # failed fetches in a row
    digest: str | None                   # SHA-256 of the document in use; None: none
    valid_until: float | None


def pinned_sources(tenants: Tenants | Iterable[Any]) -> list[PinnedSource]:
    """The SAML IdPs of ``tenants`` whose metadata is named by URL."""
    sources = []
    for tenant in tenants:
        for idp in tenant.identity_providers:
            metadata = idp.metadata
            if idp.type == "saml" and metadata is not None and metadata.url and metadata.signing_cert_sha256:
                pins = metadata.signing_cert_sha256
                sources.append(PinnedSource(idp=idp.key, url=metadata.url,
                                            pins=(pins,) if isinstance(pins, str) else tuple(pins),
                                            entity_id=idp.entity_id, ca_file=getattr(metadata, "ca_file", None)))
    return sources


def display_url(url: str) -> str:
    """The URL as logged: scheme, host, port and path (a query or credentials may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


# -- one document --------------------------------------------------------------------------------

def fetch(url: str, http: requests.Session, policy: RefreshPolicy = DEFAULT_POLICY) -> bytes:
    """The body at ``url``: at most 10 MiB, all of it within ``policy.total_timeout``."""
    deadline = time.monotonic() + policy.total_timeout
    with http.get(url, timeout=policy.timeout, stream=True, headers={"Accept": _ACCEPT}) as reply:
        reply.raise_for_status()
        chunks, size = [], 0
        for chunk in reply.iter_content(64 * 1024):
            size += len(chunk)
            if size > _MAX_BYTES:
                raise MetadataRejected("the metadata is larger than 10 MiB")
            if time.monotonic() > deadline:
                raise MetadataRejected(f"the metadata took longer than {policy.total_timeout:g} s to arrive")
            chunks.append(chunk)
    return b"".join(chunks)


def _fetch_and_check(source: PinnedSource, http: requests.Session, policy: RefreshPolicy,
                     now: float) -> PinnedDocument:
    """Raises :class:`MetadataRejected` for every failure (the reason carries no document content)."""
    try:
        body = fetch(source.url, session_for(source.ca_file, http), policy)
    except requests.HTTPError as exc:
        raise MetadataRejected(f"HTTP {exc.response.status_code if exc.response is not None else 'error'}") from None
    except (requests.RequestException, OSError) as exc:
        raise MetadataRejected(f"{type(exc).__name__}: the metadata host could not be reached") from None
    return check_pinned(body, source.pins, now=now, entity_id=source.entity_id, full=True)


def _record(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and isinstance(value.get("at"), (int, float)) else None


def _load_copy(source: PinnedSource, value: Any, now: float) -> PinnedDocument | None:
    """The stored copy, if it is still good under the source's pins (it may have changed) and time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return check_pinned(value.encode("utf-8"), source.pins, now=now, entity_id=source.entity_id, full=False)
    except MetadataRejected as exc:
        logger.info("stored metadata copy not used idp=%s reason=%s", source.idp, exc)
        return None


def _success_record(document: PinnedDocument, now: float, policy: RefreshPolicy) -> dict[str, Any]:
    at = now + policy.interval(document.cache_duration)
    if document.valid_until is not None:
        at = min(at, document.valid_until - policy.min_interval)
    return {"at": max(at, now + policy.min_interval), "failures": 0, "digest": document.digest,
            "valid_until": document.valid_until, "fetched": now}


def _failure_record(previous: Mapping[str, Any] | None, now: float, policy: RefreshPolicy) -> dict[str, Any]:
    previous = previous or {}
    failures = int(previous.get("failures") or 0) + 1
    return {"at": now + policy.backoff(failures), "failures": failures, "digest": previous.get("digest"),
            "valid_until": previous.get("valid_until"), "fetched": previous.get("fetched")}


def _save(store: Store, source: PinnedSource, document: PinnedDocument | None, record: dict[str, Any],
          now: float) -> bool:
    """Write the copy (if any) and the schedule together; False if the store could not take them."""
    try:
        with store.batch():
            if document is not None:
                ttl = CACHE_TTL if document.valid_until is None else min(CACHE_TTL, document.valid_until - now)
                store.put(source.copy_key, document.xml, max(int(ttl), 1))
            store.put(source.schedule_key, record, CACHE_TTL)
    except StoreError as exc:
        logger.warning("metadata schedule not saved idp=%s reason=%s", source.idp, exc)
        return False
    return True


def _log_failure(source: PinnedSource, reason: Exception, record: Mapping[str, Any], now: float, *,
                 serving: bool, valid_until: float | None) -> None:
    if serving:
        left = (f"valid until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(valid_until))}"
                if valid_until is not None else "no validUntil")
        outcome = f"using the last good copy ({left})"
    else:
        outcome = "and there is no good copy: the IdP is unavailable"
    logger.warning("metadata fetch failed, %s idp=%s url=%s reason=%s failures=%d retry_in=%ds", outcome,
                   source.idp, display_url(source.url), reason, record["failures"], int(record["at"] - now),
                   extra={"event": "metadata_refresh", "outcome": "failed", "idp": source.idp})


def _log_expiry(source: PinnedSource, document: PinnedDocument, store: Store | None, now: float) -> None:
    from broker.registry.expiry import log_expiry_warnings, metadata_expiry

    log_expiry_warnings(metadata_expiry(source.idp, document.xml, now=now), store=store, now=now)


def current_document(source: PinnedSource, *, store: Store, http: requests.Session, timeout: float = 10.0,
                     policy: RefreshPolicy = DEFAULT_POLICY, now: float | None = None) -> PinnedDocument:
    """The document a build of the proxy uses for ``source``; raises :class:`MetadataUnavailable`.

    The last good copy while it is not due (the refresher keeps it current); else a fresh
    fetch; else the last good copy while its ``validUntil`` allows.
    """
    now = time.time() if now is None else now
    policy = dataclasses.replace(policy, timeout=timeout)
    try:
        record, value = store.get_many(source.schedule_key, source.copy_key)
    except StoreError:
        record, value = None, None
    record = _record(record)
    copy = _load_copy(source, value, now)
    if copy is not None and record is not None and record["at"] > now:
        return copy
    try:
        document = _fetch_and_check(source, http, policy, now)
    except MetadataRejected as exc:
        failed = _failure_record(record or ({"digest": copy.digest, "valid_until": copy.valid_until}
                                            if copy else None), now, policy)
        _save(store, source, None, failed, now)
        _log_failure(source, exc, failed, now, serving=copy is not None,
                     valid_until=copy.valid_until if copy else None)
        if copy is not None:
            return copy
        raise MetadataUnavailable(f"{display_url(source.url)}: {exc}") from None
    _save(store, source, document, _success_record(document, now, policy), now)
    _log_expiry(source, document, store, now)
    return document


def documents_for_build(tenants: Tenants | Iterable[Any], *, store: Store, http: requests.Session,
                        policy: RefreshPolicy = DEFAULT_POLICY) -> dict[str, str | None]:
    """The metadata of every SAML IdP named by URL, for a build; ``None`` for those unavailable.

    Concurrent: a start with many such IdPs whose copies are due does not wait for each fetch in turn.
    """
    sources = pinned_sources(tenants)

    def one(source: PinnedSource) -> str | None:
        try:
            return current_document(source, store=store, http=http, timeout=policy.timeout, policy=policy).xml
        except MetadataUnavailable as exc:
            logger.error("upstream IdP unavailable idp=%s reason=%s", source.idp, exc)
            return None

    if not sources:
        return {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(16, len(sources))) as pool:
        return dict(zip((s.idp for s in sources), pool.map(one, sources), strict=True))


def last_good_copies(tenants: Tenants | Iterable[Any], store: Store, *,
                     now: float | None = None) -> dict[str, str | None]:
    """The stored copy of every URL-named IdP's metadata that is still good, without any fetch
    (``broker check``, the expiry report); ``{}`` if the store does not answer."""
    now = time.time() if now is None else now
    sources = pinned_sources(tenants)
    if not sources:
        return {}
    try:
        values = store.get_many(*(s.copy_key for s in sources))
    except StoreError:
        return {}
    out: dict[str, str | None] = {}
    for source, value in zip(sources, values, strict=True):
        copy = _load_copy(source, value, now)
        out[source.idp] = copy.xml if copy else None
    return out


# -- the refresher ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Seen:
    schedule_digest: str | None          # the schedule's digest last looked at
    digest: str | None                   # the document in use (None: none)
    valid_until: float | None


class MetadataRefresher:
    """Refreshes due documents; says when one in use has changed.

    ``sources`` is a list of :class:`PinnedSource`, or a callable returning the current
    ones (``lambda: pinned_sources(app.registry.tenants)``): a registry change is followed
    at the next tick, and a new source's document is not reported as a change (the
    rebuild that brought the source in used it).  ``clock`` gives POSIX seconds.
    """

    def __init__(self, sources: Iterable[PinnedSource] | Callable[[], Iterable[PinnedSource]], store: Store, *,
                 http: requests.Session | None = None, policy: RefreshPolicy = DEFAULT_POLICY,
                 clock: Callable[[], float] = time.time):
        if callable(sources):
            self._sources = sources
        else:
            fixed = tuple(sources)
            self._sources = lambda: fixed
        self.store = store
        self.http = http or requests.Session()
        self.policy = policy
        self.clock = clock
        self._seen: dict[PinnedSource, _Seen] = {}
        self._records: dict[PinnedSource, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        self._claim = secrets.token_hex(8)

    def prime(self, now: float | None = None) -> None:
        """Take the stored documents as the ones in use (call it right after the build that used them)."""
        with self._lock:
            now = self.clock() if now is None else now
            sources = list(dict.fromkeys(self._sources()))
            try:
                records = self.store.get_many(*(s.schedule_key for s in sources)) if sources else []
            except StoreError:
                return
            for source, record in zip(sources, records, strict=True):
                if source not in self._seen:
                    self._seen[source] = self._baseline(source, _record(record), now)

    def refresh_due(self, now: float | None = None) -> bool:
        """Fetch what is due; True when a document in use changed or expired (rebuild the proxy).

        Never raises for a city's failure or the store's (both are logged; the next tick tries again).
        """
        with self._lock:
            now = self.clock() if now is None else now
            sources = list(dict.fromkeys(self._sources()))
            if not sources:
                self._seen.clear()
                self._records.clear()
                return False
            try:
                records = self.store.get_many(*(s.schedule_key for s in sources))
            except StoreError as exc:
                logger.warning("metadata refresh skipped: the store does not answer reason=%s", exc)
                return False
            changed = False
            seen: dict[PinnedSource, _Seen] = {}
            for source, value in zip(sources, records, strict=True):
                try:
                    seen[source], changed_now = self._tick(source, _record(value), now)
                except Exception:  # noqa: BLE001 - one city's document must not hold up the others
                    logger.exception("metadata refresh failed idp=%s", source.idp)
                    if source in self._seen:
                        seen[source] = self._seen[source]
                    continue
                changed = changed or changed_now
            self._seen = seen
            self._records = {s: r for s, r in self._records.items() if s in seen}
            return changed

    def _tick(self, source: PinnedSource, record: dict[str, Any] | None, now: float) -> tuple[_Seen, bool]:
        """One source at one tick: what is in use after it, and whether that changed."""
        changed = False
        state = self._seen.get(source)
        if state is None:
            state = self._baseline(source, record, now)
        fetched = None
        if record is None or record["at"] <= now:
            record, fetched = self._refresh(source, record, state, now)
        digest = record.get("digest") if record else None
        if digest != state.schedule_digest:
            document = fetched if fetched is not None and fetched.digest == digest else \
                self._stored(source, now)
            new = document.digest if document else None
            if new != state.digest:
                changed = True
                logger.info("metadata changed idp=%s url=%s", source.idp, display_url(source.url),
                            extra={"event": "metadata_refresh", "outcome": "changed", "idp": source.idp})
            state = _Seen(digest, new, document.valid_until if document else None)
        if state.digest is not None and state.valid_until is not None and state.valid_until <= now:
            logger.warning("metadata expired (validUntil) and no valid copy replaced it: the IdP is "
                           "unavailable idp=%s url=%s", source.idp, display_url(source.url),
                           extra={"event": "metadata_refresh", "outcome": "expired", "idp": source.idp})
            state = _Seen(state.schedule_digest, None, None)
            changed = True
        self._records[source] = record
        return state, changed

    def status(self) -> list[SourceStatus]:
        """What was known of each document at the last tick."""
        with self._lock:
            out = []
            for source, state in self._seen.items():
                record = self._records.get(source) or {}
                out.append(SourceStatus(idp=source.idp, url=display_url(source.url),
                                        next_refresh_at=record.get("at"), failures=int(record.get("failures") or 0),
                                        digest=state.digest, valid_until=state.valid_until))
            return out

    # -- one source --------------------------------------------------------------------------

    def _stored(self, source: PinnedSource, now: float) -> PinnedDocument | None:
        try:
            value = self.store.get(source.copy_key)
        except StoreError:
            return None
        return _load_copy(source, value, now)

    def _baseline(self, source: PinnedSource, record: dict[str, Any] | None, now: float) -> _Seen:
        document = self._stored(source, now)
        digest = record.get("digest") if record else (document.digest if document else None)
        return _Seen(digest, document.digest if document else None, document.valid_until if document else None)

    def _refresh(self, source: PinnedSource, record: dict[str, Any] | None, state: _Seen,
                 now: float) -> tuple[dict[str, Any] | None, PinnedDocument | None]:
        """Fetch ``source`` if this instance wins the claim: the schedule record after it, and the
        document fetched and stored (``None`` if none was)."""
        try:
            if not self.store.add(source.claim_key, self._claim, max(int(self.policy.lease), 1)):
                return record, None         # another instance is fetching it
        except StoreError:
            return record, None
        try:
            document = _fetch_and_check(source, self.http, self.policy, now)
        except MetadataRejected as exc:
            previous = record or {"digest": state.schedule_digest, "valid_until": state.valid_until}
            failed = _failure_record(previous, now, self.policy)
            if _save(self.store, source, None, failed, now):
                self._release(source)
            _log_failure(source, exc, failed, now, serving=state.digest is not None, valid_until=state.valid_until)
            return failed, None
        fresh = _success_record(document, now, self.policy)
        if not _save(self.store, source, document, fresh, now):
            return record, None
        self._release(source)
        logger.info("metadata refreshed idp=%s url=%s changed=%s next_in=%ds", source.idp, display_url(source.url),
                    document.digest != (record or {}).get("digest"), int(fresh["at"] - now),
                    extra={"event": "metadata_refresh", "outcome": "success", "idp": source.idp})
        _log_expiry(source, document, self.store, now)
        return fresh, document


    def _release(self, source: PinnedSource) -> None:
        """Drop the claim once the schedule says when the next fetch is due (the lease only covers a crash)."""
        try:
            self.store.delete(source.claim_key)
        except StoreError:
            pass


class MetadataRefreshThread:
    """A daemon thread calling :meth:`MetadataRefresher.refresh_due` every ``interval`` seconds,
    and ``on_change()`` when it says a document changed.

    ``on_change`` (the rebuild) is called again at the next tick until it succeeds.  ``daily``
    (the expiry warnings) runs every ``daily_every`` seconds, the first time one period after
    the start (the build logs them at start).  :meth:`run_once` is one tick, for tests.
    """

    def __init__(self, refresher: MetadataRefresher | Callable[[float], bool], on_change: Callable[[], Any], *,
                 interval: float = 30.0, clock: Callable[[], float] = time.time,
                 daily: Callable[[], Any] | None = None, daily_every: float = 86400.0,
                 name: str = "metadata-refresh"):
        self._refresh_due = refresher.refresh_due if isinstance(refresher, MetadataRefresher) else refresher
        self.refresher = refresher if isinstance(refresher, MetadataRefresher) else None
        self.on_change = on_change
        self.interval = interval
        self.clock = clock
        self.daily = daily
        self.daily_every = daily_every
        self.name = name
        self._pending = False
        self._next_daily = clock() + daily_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_app(cls, app: Any, **kwargs: Any) -> MetadataRefreshThread:
        """The refresher of a :class:`broker.app.BrokerApp`: its registry's sources, its store, and a
        build of the active registry version on a change (``app._build``: ``app.rebuild`` builds only
        when another version is active); the expiry warnings logged once a day."""
        from broker.registry.expiry import expiry_report, log_expiry_warnings

        refresher = MetadataRefresher(lambda: pinned_sources(app.registry.tenants), app.store,
                                      http=getattr(app, "_http", None))
        refresher.prime()

        def daily() -> None:
            tenants = app.registry.tenants
            log_expiry_warnings(expiry_report(tenants, remote=last_good_copies(tenants, app.store),
                                              keys_dir=app.settings.keys_dir), store=app.store)

        return cls(refresher, app._build, daily=daily, **kwargs)

    def run_once(self) -> bool:
        """One tick: refresh what is due, call ``on_change`` if needed; True if it was called and succeeded."""
        now = self.clock()
        try:
            self._pending = self._refresh_due(now) or self._pending
        except Exception:  # noqa: BLE001 - the thread must outlive any one failure
            logger.exception("metadata refresh failed")
        called = False
        if self._pending:
            try:
                self.on_change()
                self._pending, called = False, True
            except Exception:  # noqa: BLE001 - the old proxy stays in use; the next tick tries again
                logger.exception("rebuild after a metadata change failed; the previous configuration stays in use")
        if self.daily is not None and now >= self._next_daily:
            self._next_daily = now + self.daily_every
            try:
                self.daily()
            except Exception:  # noqa: BLE001
                logger.exception("expiry check failed")
        return called

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()


__all__ = [
    "DEFAULT_POLICY",
    "MetadataRefreshThread",
    "MetadataRefresher",
    "PinnedSource",
    "RefreshPolicy",
    "SourceStatus",
    "current_document",
    "display_url",
    "documents_for_build",
    "fetch",
    "last_good_copies",
    "pinned_sources",
]
