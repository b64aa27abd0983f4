"""Helpers of ``bench/bench_login.py``: the login benchmark (issue 5).

* :mod:`.procstat` — server CPU, RSS and Redis CPU, read from ``/proc`` and ``INFO``;
* :mod:`.servers` — gunicorn processes started, awaited and stopped;
* :mod:`.ours` — our broker in a temporary directory (tenant, IdP metadata, client);
* :mod:`.satosa_vanilla` — vanilla SATOSA 8.6 (pyop on Redis, SAML2 backend) configured
  for the same flow;
* :mod:`.idp` — the SAML IdP and the OIDC IdP the benchmark plays;
* :mod:`.client` — the relying party: one login over HTTP, validated;
* :mod:`.prefill` — live state for N users written to Redis with pipelined raw commands;
* :mod:`.profiled_app` — our broker's WSGI app under cProfile (``--profile``).
"""
