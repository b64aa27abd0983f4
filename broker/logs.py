"""The broker's log format: one JSON object per line, with the request's correlation id.

Every record becomes exactly one line on stderr::

    {"time": "2026-05-04T07:59:12.345Z", "level": "WARNING", "logger": "broker.errors",
     "message": "refused correlation_id=3147fa7544ace600 status=400 code=invalid_client ...",
     "correlation_id": "3147fa7544ace600", "endpoint": "authorize"}

(shown on three lines here; it is one).  Every value is encoded by :mod:`json` with
``ensure_ascii``, so a newline, a quote, a NUL or a Unicode line separator that reaches a
message (a path with ``%0A``, a header value) is written as an escape and can never start
a line of its own.  Fields given with ``extra={...}`` become members of the object; a
record's exception becomes ``exc_type`` and ``traceback`` (one escaped string).

The correlation id comes from :data:`correlation_id`, a context variable that
:mod:`broker.web.guard` sets for each request, so every line written while a request is
served carries its id without the caller passing it.

Libraries that log whole protocol messages, NameIDs or tokens below ``WARNING``
(:data:`LIBRARY_LOGGERS`) are held at ``WARNING`` twice over: their loggers' levels are
raised, and the handler drops their records below ``WARNING`` even if someone lowers a
level again (:class:`LibraryFilter`).
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import sys
import time
import traceback
from typing import Any

#: The correlation id of the request being served in this context (None between requests).
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("digione_correlation_id",
                                                                            default=None)

#: Libraries whose INFO and DEBUG records carry NameIDs, attribute values, whole requests or
#: tokens; and werkzeug's request lines, which carry codes and SAML messages in query strings.
LIBRARY_LOGGERS = ("satosa", "saml2", "oic", "urllib3", "werkzeug")

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_MAX_FIELD = 2000          # characters of one extra string field
_MAX_MESSAGE = 8000        # characters of a message (a runaway repr cannot flood the log)


def current_correlation_id() -> str | None:
    """The correlation id of the request being served, if any."""
    return correlation_id.get()


def _utc(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def _field(value: Any) -> Any:
    """A JSON-safe form of an ``extra`` value: scalars as they are, everything else as a bounded string."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:_MAX_FIELD]
    if isinstance(value, (list, tuple)) and len(value) <= 50 and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return [v[:_MAX_FIELD] if isinstance(v, str) else v for v in value]
    return repr(value)[:_MAX_FIELD]


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module documentation)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} (unformattable arguments)"
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": message[:_MAX_MESSAGE],
            "correlation_id": getattr(record, "correlation_id", None) or correlation_id.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in entry and not key.startswith("_"):
                entry[key] = _field(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))[-_MAX_MESSAGE:]
        elif record.exc_text:
            entry["traceback"] = record.exc_text[-_MAX_MESSAGE:]
        if record.stack_info:
            entry["stack"] = record.stack_info[-_MAX_MESSAGE:]
        return _encode_line(entry)


# One encoder for every line: ``json.dumps`` with any non-default option builds a new one per call.
_encode_line = json.JSONEncoder(ensure_ascii=True, separators=(", ", ": "), default=repr).encode


class LibraryFilter(logging.Filter):
    """Drops records below WARNING from :data:`LIBRARY_LOGGERS` (and their children)."""

    def __init__(self, names: tuple[str, ...] = LIBRARY_LOGGERS):
        super().__init__()
        self.names = tuple(names)
        # Logger name -> held at WARNING.  Logger names are the code's own constants (a few
        # dozen per process), so the cache is bounded and saves the prefix scan per record.
        self._held: dict[str, bool] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        held = self._held.get(name)
        if held is None:
            held = self._held[name] = any(name == lib or name.startswith(lib + ".") for lib in self.names)
        return not held


class LineHandler(logging.StreamHandler):
    """A stream handler that writes each formatted record and its newline in one call.

    One ``write`` per line keeps lines from several workers sharing stderr whole.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = self.stream
            stream.write(line)
            stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging must never take a request down
            self.handleError(record)


def quiet_library_loggers() -> None:
    """Hold the libraries' loggers at WARNING: their lower levels would log personal data."""
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < logging.WARNING:
            library.setLevel(logging.WARNING)


def configure_logging(level: str | int = "INFO", *, stream=None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) as one JSON line; return the handler.

    Replaces the root logger's handlers (calling it again is harmless), sets ``level``,
    and holds :data:`LIBRARY_LOGGERS` at WARNING.
    """
    handler = LineHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LibraryFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # The line format never shows where a record was made nor its thread or process (the
    # logging HOWTO's "Optimization"): the record is built without looking them up.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    quiet_library_loggers()
    logging.captureWarnings(True)
    return handler


# --------------------------------------------------------------------------- finished logins

login_logger = logging.getLogger("broker.login")

#: The outcome of a login that reached the service.
SUCCESS = "success"

# Field names that would carry personal data, credentials or protocol messages: refused in
# login events whatever the caller passes (the event is for counting and support, not audit).
_FORBIDDEN = frozenset({
    "user_id", "uid", "sub", "name", "given_name", "family_name", "email", "username", "login_hint",
    "learner_id", "oid", "nameid", "name_id", "code", "token", "access_token", "id_token", "refresh_token",
    "assertion", "saml_response", "samlresponse", "state", "nonce", "secret", "password", "cookie",
})


def login_event(outcome: str, tenant: str | None, idp: str | None, service: str | None, user_ref: str | None,
                **fields: Any) -> None:
    """Write one line for a finished login (the broker answered the service, or gave up).

    The contract, for the login path:

    * Call it exactly once per login that ends: after the response to the service (an OIDC
      code redirect, a SAML response page, an SSO reuse) is built with ``outcome="success"``,
      and when a login in progress is refused or fails with the refusal's code as
      ``outcome`` (``"invalid_response"``, ``"idp_error"``, ``"login_required"``,
      ``"expired_flow"``, ``"temporarily_unavailable"``...).  Never for a request that
      never started a login (a bad ``/authorize`` is a refusal, logged as such).
    * ``tenant`` and ``idp`` are identifiers from the tenant files (``"vantaa"``,
      ``"koulu"``), ``service`` is the OIDC ``client_id`` or the SAML SP entity id.
    * ``user_ref`` is a pseudonymous reference, never an identifier a person or another
      system knows: :func:`user_reference` of the broker's (already salted) user id, or
      ``None`` when no user is known (a failure before the IdP answered).
    * ``fields`` are small scalars that say how it went: ``sso=True`` (an SSO session was
      reused), ``upstream="saml"``, ``duration_ms=812``, ``protocol="oidc"``.  Names that
      would carry personal data, tokens or messages (``sub``, ``email``, ``code``,
      ``token``, ``assertion``, ``state``...) are dropped, and so are values that are not
      scalars; the dropped names are listed in ``dropped``.

    The line carries the request's correlation id like every other line, at INFO for a
    success and at WARNING otherwise.
    """
    event: dict[str, Any] = {"event": "login", "outcome": outcome, "tenant": tenant, "idp": idp,
                             "service": service, "user_ref": user_ref}
    dropped = []
    for key, value in fields.items():
        if key.lower() in _FORBIDDEN or key in event or key in _RECORD_ATTRIBUTES or \
                not (value is None or isinstance(value, (bool, int, float, str))):
            dropped.append(key)
            continue
        event[key] = value[:200] if isinstance(value, str) else value
    if dropped:
        event["dropped"] = sorted(dropped)
    login_logger.log(logging.INFO if outcome == SUCCESS else logging.WARNING,
                     "login finished outcome=%s tenant=%s idp=%s service=%s", outcome, tenant, idp, service,
                     extra=event)


def user_reference(user_id: str, salt: bytes) -> str:
    """A pseudonymous, stable reference to a user for log lines: 16 hex characters.

    HMAC-SHA256 of the broker's user id under ``salt`` (a key derived for logs, not the
    pairwise or user-id salt itself), so the same person gets the same reference in every
    line and the reference cannot be turned back into the id or matched against a service's
    subject identifiers without the key.
    """
    return hmac.digest(salt, user_id.encode("utf-8"), "sha256").hex()[:16]
