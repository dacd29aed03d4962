"""Blob bytes: the storage contract (base) and its implementations."""

from registry.storage.base import BlobStore
from registry.storage.filesystem import FilesystemStore

__all__ = ["BlobStore", "FilesystemStore"]
