"""SATOSA backends: the protocols the broker speaks to the cities' IdPs (SAML SP, OpenID Connect RP)."""
