"""Schemathesis against the published OpenAPI document: every operation, as a platform admin and as a
city admin, with valid and invalid input; zero 5xx, every status and content type as documented.

Bounded: :data:`EXAMPLES` examples per operation, token and generation mode (the whole run takes well
under a minute per database).  The broker under test refuses every outgoing HTTP request (an OIDC
discovery fetch of a generated issuer is answered as a connection failure), so the run never leaves
the machine.
"""

from __future__ import annotations

import pytest
import requests
from admin_env import bearer

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")

from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    status_code_conformance,
)

EXAMPLES = 12
#: Path parameters naming objects that exist (or, as None, whatever was generated).
KNOWN = hypothesis.strategies.fixed_dictionaries({
    "tenant_id": hypothesis.strategies.sampled_from([None, "vantaa", "espoo"]),
    "idp_id": hypothesis.strategies.sampled_from([None, "koulu"]),
    "version_id": hypothesis.strategies.sampled_from([None, 1, 2, 3, 4, 5, 6, 8]),
    "client_id": hypothesis.strategies.sampled_from([None, "svc-vantaa", "svc-other"]),
    "sp_name": hypothesis.strategies.sampled_from([None, "sp-other"]),
})


class _Offline(requests.adapters.BaseAdapter):
    def send(self, request, **kwargs):
        raise requests.ConnectionError("the tests make no outgoing requests")

    def close(self):
        pass


@pytest.fixture(scope="module")
def api(site, ops):
    offline = requests.Session()
    offline.mount("http://", _Offline())
    offline.mount("https://", _Offline())
    ops._http = offline
    from broker.admin.operations import AdminOperations

    AdminOperations.for_app(site.app.admin)._http = offline
    return schemathesis.openapi.from_wsgi("/admin/api/openapi.json", site.app)


@pytest.mark.parametrize("role", ["platform", "vantaa_admin"])
def test_no_operation_answers_5xx_to_anything(api, tokens, role):
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, negative_data_rejection]
    failures = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 25
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @hypothesis.given(case=strategy, known=KNOWN)
            @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                 suppress_health_check=list(hypothesis.HealthCheck))
            def run(case, known):
                # valid input is aimed at objects that exist, about half the time
                if case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE:
                    for name, value in known.items():
                        if value is not None and name in (case.path_parameters or {}):
                            case.path_parameters[name] = value
                response = case.call(headers={**bearer(tokens[role]), "Accept": "application/json"})
                try:
                    case.validate_response(response, checks=checks)
                except Exception as exc:  # noqa: BLE001 - collected, then reported together
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                    f"{type(exc).__name__}: {str(exc)[:300]}")

            run()
    assert not failures, "\n".join(failures[:20])
