"""Signing clients from Debian's next release (trixie): cosign 2.5, skopeo 1.18 and
podman 5.4. Debian 12's skopeo and podman are built without sigstore (a Debian patch:
"sigstore disabled"), and trixie's need a newer C library than this host's, so they
run in a trixie root file system that mmdebstrap makes (cached as the stand-in images
are, tests/peers/images.py; about a minute once). Each command runs chrooted in a mount
namespace of its own (unshare), with the test's folder bound at the same path inside:
parallel tests share no mounts, and none outlives its command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.peers.images import StandIn
from tests.peers.tools import need, run_tool, unavailable

TRIXIE = StandIn(
    "local/trixie-signing", ("cosign", "skopeo", "podman", "ca-certificates"), suite="trixie"
)
# podman statfs()es /sys/fs/cgroup and wants / to be a mount point.
_ENTER = (
    'set -e; r=$1; w=$2; shift 2; mount --bind "$r" "$r"; mount -t proc proc "$r/proc"; '
    'mount --bind /sys "$r/sys"; mount --bind "$w" "$r$w"; '
    'exec chroot "$r" /usr/bin/env -C "$w" "$@"'
)
PASSWORD = "signing key password"


class Trixie:
    """The trixie tools, run on files in `work` (a folder of the test's)."""

    def __init__(self, work: Path) -> None:
        if os.geteuid() != 0:
            unavailable("the signing clients run in a chroot, which takes root")
        need("unshare")
        self.root = TRIXIE.directory()
        self.work = work
        self.home = work / "home"
        (self.home / ".config" / "containers" / "registries.d").mkdir(parents=True, exist_ok=True)
        (self.root / work.relative_to("/")).mkdir(parents=True, exist_ok=True)

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A trixie command, in `work`, with HOME in it (cosign's cache, podman's
        registries.d) and the keys' password at hand."""
        environment = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "COSIGN_PASSWORD": PASSWORD,
            "PODMAN_IGNORE_CGROUPSV1_WARNING": "1",
            **(env or {}),
        }
        enter = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _ENTER, "sh"]
        return run_tool(
            [*enter, str(self.root), str(self.work), *args],
            check=check,
            env=environment,
        )

    def key_pair(self, name: str) -> tuple[Path, str]:
        """A key pair made by cosign (its encrypted private-key format): the private
        key's path, and the public key in PEM."""
        folder = self.work / name
        folder.mkdir()
        self.run("sh", "-c", f"cd {folder} && cosign generate-key-pair")
        return folder / "cosign.key", (folder / "cosign.pub").read_text()

    def attachments(self, host: str) -> None:
        """containers/image reads and writes sigstore signatures at `host` as cosign's
        `.sig` attachments (skopeo and podman both read HOME's registries.d)."""
        config = self.home / ".config" / "containers" / "registries.d" / "local.yaml"
        config.write_text(json.dumps({"docker": {host: {"use-sigstore-attachments": True}}}))

    def cosign(self, *args: str, experimental: bool = False) -> subprocess.CompletedProcess[str]:
        """cosign; `experimental` for what it hides behind COSIGN_EXPERIMENTAL (its
        referrers mode)."""
        return self.run("cosign", *args, env={"COSIGN_EXPERIMENTAL": "1"} if experimental else {})

    def skopeo(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("skopeo", "--registries.d", str(self.registries_d), *args, check=check)

    @property
    def registries_d(self) -> Path:
        return self.home / ".config" / "containers" / "registries.d"

    def podman_pull(self, reference: str, policy: dict[str, object], creds: str) -> str:
        """podman 5 pulls under a signature policy (policy.json): '' when it accepts, its
        error when it refuses."""
        path = self.work / "policy.json"
        path.write_text(json.dumps(policy))
        result = self.run(
            "podman",
            "--root",
            str(self.work / "podman-root"),
            "--runroot",
            str(self.work / "podman-run"),
            "--storage-driver",
            "vfs",
            "pull",
            "-q",
            "--tls-verify=false",
            "--creds",
            creds,
            "--signature-policy",
            str(path),
            reference,
            check=False,
        )
        return "" if result.returncode == 0 else (result.stderr.strip() or result.stdout)
