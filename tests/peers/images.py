"""Base images for the container tests, built from Debian's packages: Docker Hub is out of
these machines' reach, Debian's archive is not. mmdebstrap makes a bookworm root file
system with the packages a stand-in needs (about 30 s), `docker import` makes it an image.
Tarballs are cached by what goes into them, in REGISTRY_TEST_IMAGES (default
~/.cache/registry-test-images), so a second run only imports.

The Dockerfile and docker-compose.yml take these images' names from variables whose
defaults are the real images (python:3.11-slim, ...), so the same files build and run on
the stand-ins here and on Docker Hub's images for users.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.peers.tools import need

CACHE = Path(
    os.environ.get("REGISTRY_TEST_IMAGES", Path.home() / ".cache" / "registry-test-images")
)
# The host's way to PyPI (an index, a CA of its own), for pip in a build on the image.
HOST_PIP_FILES = ("/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt")


class DockerClient(Protocol):
    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]: ...


@dataclass(frozen=True)
class StandIn:
    """An image made of Debian packages, for an image of Docker Hub's."""

    name: str
    packages: tuple[str, ...]
    # Files copied from the host into the image, when the host has them.
    uploads: tuple[str, ...] = ()
    # `docker import --change` instructions (CMD, ENV, ...).
    changes: tuple[str, ...] = ()
    # Executable files written into the image: (path, text).
    scripts: tuple[tuple[str, str], ...] = ()
    # Shell commands run last, with the root file system in $1 (mmdebstrap's
    # customize hooks), e.g. `chroot "$1" pip install ...`.
    hooks: tuple[str, ...] = ()
    # Debian's release the packages come from.
    suite: str = "bookworm"

    def key(self) -> str:
        present = [p for p in self.uploads if Path(p).exists()]
        contents = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in present]
        spec = [self.packages, present, contents, self.changes, self.scripts, self.hooks]
        if self.suite != "bookworm":  # the keys of the images cached already stay
            spec.append(self.suite)
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]

    def tarball(self) -> Path:
        """The root file system, built once per key: a build under way (in another thread,
        or another test run) is waited for rather than made twice."""
        need("mmdebstrap")
        path = CACHE / f"{self.name.replace('/', '_').replace(':', '_')}-{self.key()}.tar"
        if path.exists():
            return path
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                self._build(path)
        return path

    def _build(self, path: Path) -> None:
        hooks = [f"--customize-hook=upload {p} {p}" for p in self.uploads if Path(p).exists()]
        # mmdebstrap reads the format from the name's end.
        with tempfile.NamedTemporaryFile(dir=CACHE, suffix=".part.tar", delete=False) as part:
            pass
        scripts = tempfile.TemporaryDirectory(dir=CACHE)
        for number, (target, text) in enumerate(self.scripts):
            source = Path(scripts.name) / str(number)
            source.write_text(text)
            hooks += [
                f"--customize-hook=upload {source} {target}",
                f'--customize-hook=chmod 755 "$1{target}"',
            ]
        hooks += [f"--customize-hook={hook}" for hook in self.hooks]
        try:
            made = subprocess.run(
                [
                    "mmdebstrap",
                    "--quiet",
                    "--variant=minbase",
                    f"--include={','.join(self.packages)}",
                    *hooks,
                    self.suite,
                    part.name,
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if made.returncode != 0:
                raise RuntimeError(f"mmdebstrap for {self.name} failed:\n{made.stderr[-2000:]}")
            os.replace(part.name, path)  # whole or not at all
        finally:
            Path(part.name).unlink(missing_ok=True)
            scripts.cleanup()

    def directory(self) -> Path:
        """The root file system unpacked (once, beside its tarball), for a chroot."""
        tarball = self.tarball()
        target = tarball.with_suffix("")
        if (target / "etc" / "debian_version").exists():
            return target
        with open(tarball.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "etc" / "debian_version").exists():
                part = Path(tempfile.mkdtemp(dir=CACHE, suffix=".part"))
                try:
                    subprocess.run(
                        ["tar", "-xf", str(tarball), "-C", str(part)], check=True, timeout=600
                    )
                    shutil.rmtree(target, ignore_errors=True)
                    os.replace(part, target)  # whole or not at all
                finally:
                    shutil.rmtree(part, ignore_errors=True)
        return target

    def prepare(self) -> None:
        """Start building the tarball in the background (a few hundred MB of Debian
        packages unpacked: about a minute each), for `load` to find or wait for."""
        if shutil.which("mmdebstrap") is None:
            return  # tarball() says so, in the test that needs it
        threading.Thread(target=self._prepare, name=f"tarball {self.name}", daemon=True).start()

    def _prepare(self) -> None:
        # A failure here is met again, and reported, by the test's own tarball() call.
        with contextlib.suppress(Exception):
            self.tarball()

    def load(self, docker: DockerClient) -> str:
        """The image in `docker`'s store (imported unless it is there); its name."""
        if docker.run("image", "inspect", self.name, check=False).returncode != 0:
            changes = [arg for change in self.changes for arg in ("--change", change)]
            docker.run("import", *changes, str(self.tarball()), self.name)
        return self.name


# The Dockerfile's PYTHON_IMAGE: Python 3.11 with venv, as python:3.11-slim has them.
PYTHON = StandIn(
    "local/python:3.11",
    ("python3", "python3-venv", "ca-certificates"),
    uploads=HOST_PIP_FILES,
    changes=('CMD ["python3"]',),
)


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# nginx as Docker Hub's nginx image runs it: files in /etc/nginx/templates/ rendered with
# envsubst into conf.d/ at start (only the variables set, so nginx's own stay), logs to
# the container's output, in the foreground.
_NGINX_ENTRYPOINT = r"""#!/bin/sh
set -eu
names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
  [ -e "$template" ] || continue
  target=/etc/nginx/conf.d/$(basename "$template" .template)
  envsubst "$names" < "$template" > "$target"
done
exec "$@"
"""

NGINX = StandIn(
    "local/nginx:1.22",
    ("nginx", "gettext-base"),
    changes=(
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
        'CMD ["nginx", "-g", "daemon off;"]',
    ),
    scripts=(("/usr/local/bin/docker-entrypoint.sh", _NGINX_ENTRYPOINT),),
    hooks=(
        'rm -f "$1/etc/nginx/sites-enabled/default"',
        'ln -sf /dev/stdout "$1/var/log/nginx/access.log"',
        'ln -sf /dev/stderr "$1/var/log/nginx/error.log"',
    ),
)

# PostgreSQL as Docker Hub's postgres image runs it: a cluster made on first start in
# PGDATA for POSTGRES_USER (its password from POSTGRES_PASSWORD_FILE) with POSTGRES_DB,
# reached over the network with a password, run as the postgres user.
_POSTGRES_ENTRYPOINT = r"""#!/bin/sh
set -eu
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user="${POSTGRES_USER:-postgres}"
  password="${POSTGRES_PASSWORD:-}"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then password=$(cat "$POSTGRES_PASSWORD_FILE"); fi
  printf '%s\n' "$password" > /tmp/password
  initdb --username="$user" --pwfile=/tmp/password --auth-local=trust \
    --auth-host=scram-sha-256 -D "$PGDATA" >/dev/null
  rm /tmp/password
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  database="${POSTGRES_DB:-$user}"
  if [ "$database" != postgres ]; then
    postgres --single -D "$PGDATA" postgres <<SQL >/dev/null
CREATE DATABASE "$database" OWNER "$user";
SQL
  fi
fi
exec "$@"
"""

POSTGRES = StandIn(
    "local/postgres:15",
    ("postgresql-15",),
    changes=(
        f"ENV PATH=/usr/lib/postgresql/15/bin:{_PATH}",
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
        'CMD ["postgres"]',
    ),
    scripts=(("/usr/local/bin/docker-entrypoint.sh", _POSTGRES_ENTRYPOINT),),
    # The cluster Debian's package makes on installing: the entrypoint makes its own.
    hooks=('chroot "$1" pg_dropcluster 15 main',),
)

# An S3 server in place of MinIO (which has no Debian package): moto's, from PyPI, the
# version the tests install; it keeps objects in memory only.
MOTO_VERSION = "5.2.5"
S3 = StandIn(
    "local/moto:" + MOTO_VERSION,
    ("python3", "python3-venv", "ca-certificates"),
    uploads=HOST_PIP_FILES,
    changes=(
        f"ENV PATH=/opt/moto/bin:{_PATH}",
        'CMD ["moto_server", "-H", "0.0.0.0", "-p", "9000"]',
    ),
    hooks=(
        'chroot "$1" python3 -m venv /opt/moto',
        f'chroot "$1" /opt/moto/bin/pip install -q "moto[server]=={MOTO_VERSION}"',
    ),
)
