"""Demo peers: city identity providers (SAML, Entra-shaped OIDC) and demo services.

Nothing else in ``broker`` imports this package: it stands in for the outside
world (a city's IdP, a school's service) so the broker can be shown and tested
end to end on one machine.
"""
