"""A stand-in for an upstream IdP whose configuration could not be loaded.

Its users get a clear "your city's sign-in service is unavailable" page; every
other IdP keeps working.  The next registry rebuild tries the IdP again.
"""

from __future__ import annotations

from satosa.backends.base import BackendModule

from broker.errors import IdpError


class UnavailableBackend(BackendModule):
    def __init__(self, auth_callback_func, internal_attributes, config, base_url, name):
        super().__init__(auth_callback_func, internal_attributes, base_url, name)
        self.config = config

    def start_auth(self, context, internal_request):
        raise IdpError(f"upstream IdP {self.name} is unavailable (its configuration could not be loaded)",
                       status=503)

    def register_endpoints(self):
        return []

    def get_metadata_desc(self):
        return []
