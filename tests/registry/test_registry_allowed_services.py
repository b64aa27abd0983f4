"""``allowed_services`` in tenant files: the shape, the school codes it may name, who it allows,
and `broker check`'s warning for service ids nothing is registered under.

The tenant files are the shipped ones, edited in a temporary copy and loaded by the real
loader (``load_registry``) and the real ``broker check``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from broker.assemble import load_registry
from broker.demo.stack import DemoStack, Ports
from broker.registry.services import ALLOW_ALL, ServiceAccess, parse_allowed_services
from broker.registry.tenants import TenantError
from broker.settings import ROOT

ESPOO = ("90491", "90492")   # Espoo's schools in tenants/espoo.yaml


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("allowed-services")
    stack = DemoStack(demo_dir=root / "demo", metadata_dir=root / "metadata", ports=Ports(), environ={})
    stack.prepare()
    return stack


def _tenants_with(tmp_path: Path, allowed) -> Path:
    target = tmp_path / "tenants"
    shutil.copytree(ROOT / "tenants", target)
    path = target / "espoo.yaml"
    data = yaml.safe_load(path.read_text())
    data["allowed_services"] = allowed
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return target


def _problems(demo: DemoStack, tmp_path: Path, allowed) -> list[str]:
    with pytest.raises(TenantError) as error:
        load_registry(demo.settings(tenants_dir=_tenants_with(tmp_path, allowed)))
    return [p.replace(str(tmp_path) + "/", "") for p in error.value.problems]


class Failures:
    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def fail(self, path: str, expected: str) -> None:
        self.seen.append((path, expected))


# -- loading -------------------------------------------------------------------------------------


def test_the_shipped_tenants_allow_every_service(demo):
    registry = load_registry(demo.settings())
    assert all(t.allowed_services is ALLOW_ALL and t.allowed_services.allows_all for t in registry.tenants)


def test_a_valid_choice_loads_onto_the_tenant(demo, tmp_path):
    allowed = {"default": ["demo-service-a"], "schools": {"90492": ["demo-service-b", "sp/e2e-sp"], "90491": "all"}}
    registry = load_registry(demo.settings(tenants_dir=_tenants_with(tmp_path, allowed)))
    access = registry.tenants.by_id["espoo"].allowed_services
    assert access == ServiceAccess(default=frozenset({"demo-service-a"}),
                                   schools={"90492": frozenset({"demo-service-b", "sp/e2e-sp"}), "90491": None},
                                   codes=frozenset(ESPOO))
    assert not access.allows_all
    assert registry.tenants.by_id["vantaa"].allowed_services is ALLOW_ALL


@pytest.mark.parametrize("allowed,expected", [
    (["demo-service-a"], "tenants/espoo.yaml: allowed_services: expected a mapping with default"),
    ("none", "tenants/espoo.yaml: allowed_services: expected a mapping with default"),
    ({"default": "some"}, "tenants/espoo.yaml: allowed_services.default: expected 'all' or a list of service ids"),
    ({"default": ["ok", 5]}, "tenants/espoo.yaml: allowed_services.default[1]: expected a service id"),
    ({"default": ["sp/a/b"]}, "tenants/espoo.yaml: allowed_services.default[0]: expected a service id"),
    ({"default": ["has space"]}, "tenants/espoo.yaml: allowed_services.default[0]: expected a service id"),
    ({"schools": ["90491"]}, "tenants/espoo.yaml: allowed_services.schools: expected a mapping of this city's "
                             "school codes"),
    ({"schools": {"90921": ["demo-service-a"]}},
     "tenants/espoo.yaml: allowed_services.schools.90921: expected a school code of this city, one of "
     "schools[].code (90491, 90492)"),
    ({"schools": {90491: "everything"}}, "tenants/espoo.yaml: allowed_services.schools.90491: expected 'all' or a "
                                         "list of service ids"),
    ({"colour": "blue"}, "tenants/espoo.yaml: allowed_services.colour: expected one of the known keys "
                         "(default, schools)"),
])
def test_each_error_names_the_field(demo, tmp_path, allowed, expected):
    problems = _problems(demo, tmp_path, allowed)
    assert any(p.startswith(expected) for p in problems), problems


def test_an_unquoted_school_code_that_lost_its_zero_is_explained():
    failures = Failures()
    parse_allowed_services({"schools": {3083: "all"}}, {"03083"}, failures)
    assert failures.seen == [("allowed_services.schools.3083", "a school code of this city, one of schools[].code "
                              "(03083) (quote it: YAML reads an unquoted 03083 as the number 3083)")]


def test_unknown_service_ids_load_and_broker_check_warns(demo, tmp_path):
    tenants = _tenants_with(tmp_path, {"default": ["demo-service-a", "not-registered"],
                                       "schools": {"90491": ["sp/nowhere"]}})
    registry = load_registry(demo.settings(tenants_dir=tenants))   # not an error at load
    assert "not-registered" in registry.tenants.by_id["espoo"].allowed_services.default
    env = {**demo.env(), "PATH": "/usr/bin:/bin", "BROKER_TENANTS_DIR": str(tenants)}
    result = subprocess.run([sys.executable, "-m", "broker", "check"], env=env, capture_output=True, text=True,
                            timeout=120, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "allowed_services" in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("warning: ") and "espoo.yaml: allowed_services: no registered service is named " \
                                                  "not-registered, sp/nowhere" in warnings[0]
    assert "demo-service-a" not in warnings[0], "a registered client is not warned about"


# -- who is allowed -------------------------------------------------------------------------------


def _access(allowed, codes=ESPOO) -> ServiceAccess:
    failures = Failures()
    access = parse_allowed_services(allowed, codes, failures)
    assert failures.seen == []
    return access


def test_absent_key_allows_everything():
    assert _access(None) is ALLOW_ALL
    assert ALLOW_ALL.allows("anything", []) and ALLOW_ALL.allows(None, ["90491"])


def test_default_list_applies_to_schools_without_override_and_people_without_school():
    access = _access({"default": ["a"]})
    assert access.allows("a", ["90491"]) and not access.allows("b", ["90491"])
    assert access.allows("a", []) and not access.allows("b", [])
    assert not access.allows(None, ["90491"]), "a service without an id is allowed only where all are"


def test_a_school_override_allows_where_the_default_denies_and_the_other_way_round():
    access = _access({"default": ["a"], "schools": {"90491": ["b"], "90492": "all"}})
    assert access.allows("b", ["90491"]) and not access.allows("a", ["90491"]), "90491 overrides the default"
    assert access.allows("anything", ["90492"])
    restrictive = _access({"default": "all", "schools": {"90491": []}})
    assert not restrictive.allows("a", ["90491"]), "a school may turn every service off"
    assert restrictive.allows("a", ["90492"]) and restrictive.allows("a", [])


def test_any_school_of_the_person_is_enough_and_other_cities_codes_are_ignored():
    access = _access({"default": [], "schools": {"90491": ["a"], "90492": ["b"]}})
    assert access.allows("a", ["90491", "90492"]) and access.allows("b", ["90491", "90492"])
    assert not access.allows("c", ["90491", "90492"])
    assert not access.allows("a", ["90921"]), "a code the city does not list: the default (none) applies"
    assert not access.allows("b", ["90491", "90921"])


def test_service_ids_lists_everything_named():
    access = _access({"default": ["a"], "schools": {"90491": ["sp/x"], "90492": "all"}})
    assert access.service_ids() == {"a", "sp/x"}
