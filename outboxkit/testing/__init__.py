"""Conformance suites for store and publisher plugins."""
