"""The audit: what every service received about whom (names, never values), and every admin change.

* :mod:`broker.audit.records` — the records and the pseudonymous subject reference;
  :class:`ReleaseAudit` is what the login path calls.
* :mod:`broker.audit.buffer` — the Redis (or memory) buffer the login path writes to, O(1),
  inside a store batch it already sends.
* :mod:`broker.audit.flusher` — the background thread (one per worker) that moves buffered
  records to the registry's database, losing none and writing none twice.
* :mod:`broker.audit.storage` — the append-only tables: writes that ignore known ids, the
  queries, and the retention purge.
* :mod:`broker.audit.cli` — ``broker audit releases``.

Why it is built this way: docs/decisions/0017-audit.md.
"""

from typing import Any

from broker.audit.buffer import AuditBuffer
from broker.audit.flusher import AuditFlusher
from broker.audit.records import SUBJECT_KEY_PURPOSE, AdminChange, Release, ReleaseAudit, subject_reference
from broker.audit.storage import AuditLog

__all__ = ["AdminChange", "AuditBuffer", "AuditFlusher", "AuditLog", "Release", "ReleaseAudit", "build_audit",
           "subject_reference"]


def build_audit(settings: Any, store: Any, log: AuditLog) -> tuple[ReleaseAudit, AuditFlusher]:
    """The release audit the login path calls and the flusher that writes it to ``log``'s database."""
    from broker.derive import derive_key
    from broker.logs import current_correlation_id

    buffer = AuditBuffer(store, limit=settings.audit_buffer_max)
    audit = ReleaseAudit(buffer, derive_key(settings.master_secret, SUBJECT_KEY_PURPOSE),
                         correlation_id=current_correlation_id)
    return audit, AuditFlusher(buffer, log, retention_days=settings.audit_retention_days)
