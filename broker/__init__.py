"""DigiOne Login: the single sign-on broker of the national education platform.

The package is laid out by concern, each floor importing only the floors below:

* ``cli`` — the ``broker`` command;
* ``app`` — WSGI composition of the assembled proxy, discovery pages and health;
* ``proxy`` — SATOSA assembled from the registry, shared tamper-evident state, our SAML backend;
* ``tokens`` — the OIDC provider frontend, grants and signing keys;
* ``discovery`` — the IdP selection pages;
* ``demo`` — demo city IdPs and demo services (never imported by the rest);
* ``registry`` — tenants, IdPs, relying parties: model, validation and loading;
* ``mapping`` — the pure attribute rule engine and release policy;
* ``store`` — the one place that talks to Redis (or the in-memory default);
* ``verify`` — the kit services use to verify our tokens (imports nothing from here).
"""

__version__ = "0.1.0"
