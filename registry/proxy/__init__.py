"""The pull-through mirror: an upstream registry client and the cache in front of it."""
