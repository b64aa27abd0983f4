"""pysaml2 attribute map of every name the broker releases (MPASSid and DigiOne profiles).

For pysaml2 peers (service providers, tests) that want local names for the
broker's URI-named attributes: point their ``attribute_map_dir`` here.  The
names are defined once, in :data:`broker.mapping.PROFILES`; without a map entry
pysaml2 drops an attribute it receives, so every released name is listed.
"""

from broker.mapping.profiles import attribute_map

MAP = attribute_map()
