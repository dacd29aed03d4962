"""Replication: copies between this registry and others (issue 34)."""
