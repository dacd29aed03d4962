"""Identities, password hashes, tokens and access decisions. Nothing here speaks HTTP."""
