"""Secrets sealed with the sealing key: they open with that key only, the key file is
made once (mode 0600) and shared by whoever starts together, and a damaged key file
stops the start with a line that names it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from registry.auth.sealed import Sealer, sealer_from_file
from registry.config import ConfigError


def test_a_sealed_secret_opens_with_its_key_only(tmp_path: Path) -> None:
    sealer = sealer_from_file(tmp_path / "sealing.key")
    sealed = sealer.seal("refresh-token-of-alice")
    assert "refresh-token-of-alice" not in sealed and sealed.startswith("v1.")
    assert sealer.seal("refresh-token-of-alice") != sealed  # a fresh nonce each time
    assert sealer.open(sealed) == "refresh-token-of-alice"
    assert sealer_from_file(tmp_path / "sealing.key").open(sealed) == "refresh-token-of-alice"
    assert Sealer(b"\0" * 32).open(sealed) is None
    assert sealer.open(sealed[:-4] + "AAAA") is None
    assert sealer.open("not sealed") is None
    assert (tmp_path / "sealing.key").stat().st_mode & 0o777 == 0o600


def test_processes_starting_together_make_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sealing.key"
    with ThreadPoolExecutor(8) as pool:
        sealers = list(pool.map(lambda _: sealer_from_file(path), range(16)))
    sealed = sealers[0].seal("x")
    assert all(s.open(sealed) == "x" for s in sealers)


def test_a_damaged_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sealing.key"
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"sealing_key_file: .*sealing.key does not hold a key"):
        sealer_from_file(path)
