"""`registry trust …` against a running server's database: a key added from the shell is
the one the API lists and the server checks signatures with; bad keys and names are
refused with one line; the changes are audited as the operator's."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.peers.registry import RegistryProcess


def pem_of(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_trusted_keys_from_the_command_line(tmp_path: Path) -> None:
    env = {"REGISTRY_AUTH_ENABLED": "true", "REGISTRY_ADMIN_PASSWORD": "trust admin"}
    server = RegistryProcess(tmp_path / "data", env).start()
    admin = ("admin", "trust admin")
    try:
        ecdsa, ed = tmp_path / "cosign.pub", tmp_path / "ed.pub"
        ecdsa.write_bytes(pem_of(ec.generate_private_key(ec.SECP256R1())))
        ed.write_bytes(pem_of(ed25519.Ed25519PrivateKey.generate()))
        added = server.cli("trust", "add", "release", str(ecdsa)).stdout
        assert "the registry trusts ecdsa-secp256r1 key 'release' (sha256:" in added
        missing_namespace = server.cli_result("trust", "add", "--namespace", "team", "x", str(ed))
        assert "no namespace named 'team'" in missing_namespace.stderr
        server.cli("namespace", "add", "team")
        server.cli("trust", "add", "--namespace", "team", "edge", "-", stdin=ed.read_text())
        listed = server.cli("trust", "list").stdout.splitlines()
        assert [line.split("\t")[:3] for line in listed] == [
            ["(registry)", "release", "ecdsa-secp256r1"],
            ["team", "edge", "ed25519"],
        ]
        assert len(server.cli("trust", "list", "--namespace", "team").stdout.splitlines()) == 1
        api = server.get("/api/v1/trust/keys", auth=admin).json()["keys"]
        assert [(k["namespace"], k["name"]) for k in api] == [("", "release")]
        api = server.get("/api/v1/namespaces/team/trust/keys", auth=admin).json()["keys"]
        assert [(k["namespace"], k["name"]) for k in api] == [("team", "edge")]

        again = server.cli_result("trust", "add", "other-name", str(ecdsa))
        assert again.returncode == 1 and "already" in again.stderr
        assert "Traceback" not in again.stderr and len(again.stderr.splitlines()) == 1
        (tmp_path / "bad.pub").write_text("not a key")
        bad = server.cli_result("trust", "add", "bad", str(tmp_path / "bad.pub"))
        assert bad.returncode == 1 and bad.stderr.startswith("registry: pem: ")
        missing = server.cli_result("trust", "add", "gone", str(tmp_path / "nowhere.pub"))
        assert missing.returncode == 1 and "nowhere.pub" in missing.stderr

        assert "no longer trusts key 'release'" in server.cli("trust", "rm", "release").stdout
        gone = server.cli_result("trust", "rm", "release")
        assert gone.returncode == 1 and "no trusted key named 'release'" in gone.stderr
        audit = server.get("/api/v1/audit", params={"action": "trust.key."}, auth=admin)
        audit = audit.json()["events"]
        assert [e["action"] for e in audit] == [
            "trust.key.delete",
            "trust.key.create",
            "trust.key.create",
        ]
    finally:
        server.stop()
