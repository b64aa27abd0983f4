"""SATOSA frontends: the protocols the broker speaks to services (OpenID Connect, SAML IdP)."""
