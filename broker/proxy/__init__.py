"""SATOSA assembled from the registry: routing, shared tamper-evident state, our backends."""
