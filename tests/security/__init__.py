"""Security tests: every check on an upstream (SAML or OIDC) response, through the running broker."""
