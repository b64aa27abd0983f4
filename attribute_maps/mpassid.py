"""pysaml2 attribute map of the names the broker releases (MPASSid and DigiOne profiles).

For pysaml2 peers (service providers, tests) that want FriendlyNames for the
broker's URI-named attributes: point their ``attribute_map_dir`` here.  The
names themselves are defined once, in :data:`broker.mapping.SAML_FRIENDLY_NAMES`.
"""

from broker.mapping import NAME_FORMAT_URI, SAML_FRIENDLY_NAMES

MAP = {
    "identifier": NAME_FORMAT_URI,
    "fro": dict(SAML_FRIENDLY_NAMES),
    "to": {friendly: uri for uri, friendly in SAML_FRIENDLY_NAMES.items() if not uri.startswith("urn:digione:")},
}
