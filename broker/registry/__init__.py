"""The registry: tenants (cities), their identity providers and schools, and relying parties."""
