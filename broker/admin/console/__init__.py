"""The admin web console (``/admin``): server-rendered pages for city admins, service owners and
platform admins.

Every page is plain HTML from a Jinja template under ``broker/admin/templates`` with one
stylesheet (``/admin/static/console.css``); no page needs JavaScript.  Every read and every
action goes through :class:`broker.admin.operations.AdminOperations`, which holds every
permission check: the console only decides what to show.  Modules:

* :mod:`.session` — console sessions in the broker's store, CSRF tokens;
* :mod:`.oidc` — signing in through the broker itself (client ``digione-admin``);
* :mod:`.web` — the request context: language, session, principal, rendering, errors;
* :mod:`.signin`, :mod:`.tenant`, :mod:`.idps`, :mod:`.versions`, :mod:`.services`, :mod:`.audit` — the pages.

Texts are in ``messages.yaml`` (fi, sv, en; the same fallbacks as :mod:`broker.i18n`).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

STATIC = Path(__file__).resolve().parent.parent / "static"

blueprint = Blueprint("admin_console", __name__, static_folder=str(STATIC), static_url_path="/static")

from broker.admin.console import audit, idps, services, signin, tenant, versions, web  # noqa: E402

__all__ = ["audit", "blueprint", "idps", "services", "signin", "tenant", "versions", "web"]
