"""A self-hosted OCI / Docker container image registry."""

__version__ = "0.1.0"
