"""The verification kit under its former name: everything of :mod:`digione_verify`.

The kit is its own package now (``verify/`` in the repository, ``pip install ./verify``;
``docs/verifying-tokens.md``).  Import it as ``digione_verify``; this module only keeps
``broker.verify`` working for code not yet moved (the upstream OIDC backend and the demo
Entra IdP import their JOSE checks from here) and will go once nothing imports it.
"""

from digione_verify import *  # noqa: F403
from digione_verify import __all__  # noqa: F401
