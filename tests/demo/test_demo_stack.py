"""DemoStack.prepare: the registrations and metadata the logout chain needs (no servers started)."""

from __future__ import annotations

from saml2 import BINDING_HTTP_REDIRECT
from saml2.attribute_converter import ac_factory
from saml2.mdstore import MetadataStore

from broker.demo.stack import DemoStack, Ports
from broker.registry.relying_parties import RelyingParties


def test_prepare_registers_the_services_logout_urls_and_writes_slo_metadata(tmp_path):
    stack = DemoStack(demo_dir=tmp_path / "demo", metadata_dir=tmp_path / "metadata",
                      ports=Ports(8000, 8101, 8102, 8201, 8202), environ={})
    stack.prepare()
    from broker.app import open_registry
    from broker.registry.documents import of_kind

    clients = RelyingParties.from_documents(of_kind(open_registry(stack.settings()).versions.state().documents,
                                                    "client"), {}).clients
    a, b = clients["demo-service-a"], clients["demo-service-b"]
    assert a.backchannel_logout_uri == "http://localhost:8201/backchannel-logout"
    assert a.backchannel_logout_session_required is True and a.frontchannel_logout_uri is None
    assert b.frontchannel_logout_uri == "http://localhost:8202/frontchannel-logout"
    assert b.frontchannel_logout_session_required is True and b.backchannel_logout_uri is None
    assert a.post_logout_redirect_uris == ("http://localhost:8201/",)
    assert b.post_logout_redirect_uris == ("http://localhost:8202/",)

    store = MetadataStore(ac_factory(), None)
    store.load("local", str(tmp_path / "metadata" / "demo" / "vantaa-idp.xml"))
    assert [s["location"] for s in store.single_logout_service(
        "http://localhost:8101/vantaa/idp", BINDING_HTTP_REDIRECT, "idpsso")] == [
        "http://localhost:8101/vantaa/slo/redirect"]


def test_a_second_prepare_changes_nothing_and_does_not_fail(tmp_path):
    """A second `make demo` (or `broker demo --prepare`): the registrations are already as asked."""
    from broker.app import open_registry

    stack = DemoStack(demo_dir=tmp_path / "demo", metadata_dir=tmp_path / "metadata",
                      ports=Ports(8000, 8101, 8102, 8201, 8202), environ={})
    stack.prepare()
    versions = open_registry(stack.settings()).versions
    active = versions.state().version_id
    stack.prepare()
    assert versions.state().version_id == active
