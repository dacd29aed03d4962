"""Blob bytes: the storage contract (base) and its implementations."""

from registry.config import Settings
from registry.storage.base import BlobStore
from registry.storage.filesystem import FilesystemStore

__all__ = ["BlobStore", "FilesystemStore", "open_store"]


def open_store(settings: Settings) -> BlobStore:
    """The blob store the settings name."""
    if settings.storage.driver == "s3":
        # boto3 loads slowly; only deployments on S3 pay for it.
        from registry.storage.s3 import S3Store

        return S3Store(settings.storage.s3)
    return FilesystemStore(settings.storage_root)
