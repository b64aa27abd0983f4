"""Tests of the demo peers (a package, so that its conftest never shadows another directory's)."""
