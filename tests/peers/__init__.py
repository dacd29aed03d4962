"""Real peers for tests: PostgreSQL, the registry as a process, a Docker daemon."""
