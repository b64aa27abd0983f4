"""Self-service administration: the admin JSON API (``/admin/api``) and the web console (``/admin``).

:func:`create_admin_app` builds one Flask application for both, around the broker's
:class:`~broker.registry.service.RegistryService`: every admin action is a registry
change (a version), so the API, the console and the CLI cannot disagree.  The
application is mounted by :class:`broker.app.BrokerApp` under ``/admin`` and passes
the broker's guard like every other request.
"""

from __future__ import annotations

from typing import Any


def create_admin_app(broker: Any) -> Any:
    """The admin application for ``broker`` (a :class:`~broker.app.BrokerApp`)."""
    from flask import Flask

    from broker.admin import api, console, dynamic_registration

    app = Flask("broker.admin", root_path=__path__[0])
    app.config["BROKER"] = broker
    app.register_blueprint(api.blueprint, url_prefix="/admin/api")
    app.register_blueprint(console.blueprint, url_prefix="/admin")
    app.register_blueprint(dynamic_registration.blueprint, url_prefix="/register")
    return app
