"""Blob leases: how long a blob is kept after a client touched it, referenced or not.

A push sends its blobs (or finds them there) and PUTs the manifest that references them
later. Garbage collection deletes a blob only once nothing references it and its lease
has ended; every upload, mount, and push's check of a blob renews the lease, so a push has
`gc.blob_lease_seconds` between its blobs and its manifest.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from registry.metadata.models import now


class Leases:
    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def end(self) -> datetime:
        """When a lease taken now ends."""
        return now() + timedelta(seconds=self.seconds)
