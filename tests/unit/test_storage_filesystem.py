from pathlib import Path

import pytest

from registry.storage import BlobStore, FilesystemStore
from tests.storage_contract import StoreContract


class TestFilesystemStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> BlobStore:
        return FilesystemStore(tmp_path / "storage")

    def leftovers(self, store: BlobStore) -> list[str]:
        assert isinstance(store, FilesystemStore)
        return [str(p) for p in (store.root / "uploads").iterdir()]

    def test_paths_stay_under_the_root(self, tmp_path: Path) -> None:
        from registry.digest import Digest

        store = FilesystemStore(tmp_path / "storage")
        path = store.local_path(Digest.of(b"x"))
        assert path is not None
        assert path.is_relative_to(store.root / "blobs" / "sha256")
