"""Private nginx instances in the foreground: the shipped nginx/registry.conf.template in
front of registry processes, and a bare proxy that can be made to answer 429."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Self

from tests.peers.tools import free_port, launch, need, stop

RETRY_AFTER = "3"
# What Docker Hub announces on its answers: a limit of pulls per window, and what is left.
RATELIMIT_LIMIT, RATELIMIT_REMAINING = 100, 76
TEMPLATE = Path(__file__).parents[2] / "nginx" / "registry.conf.template"


def render(template: str, values: dict[str, str]) -> str:
    """What envsubst does with a list of variables: only those are replaced."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], m[0]), template)


def main_conf(root: Path, body: str) -> str:
    """An nginx.conf that keeps all its files in `root`, around an http-level `body`."""
    temp = "".join(
        f"  {kind}_temp_path {root / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        # Workers must see the test's private folders (nginx ignores this unless root).
        "user root;\n"
        f"pid {root / 'nginx.pid'};\n"
        f"error_log {root / 'error.log'} info;\n"
        "events {}\n"
        "http {\n"
        # The combined format, plus how many bytes came from the upstream server.
        '  log_format upstream \'$remote_addr "$request" $status $body_bytes_sent '
        "upstream_bytes=$upstream_response_length';\n"
        f"  access_log {root / 'access.log'} upstream;\n"
        f"{temp}"
        f"{body}\n"
        "}\n"
    )


class NginxProcess:
    """nginx in the foreground with its files in `root`, listening on `port`."""

    def __init__(self, root: Path) -> None:
        self.binary = need("nginx")
        self.root = root
        self.port = free_port()
        self.log = root / "error.log"
        self.access_log = root / "access.log"
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def _write_conf(self, body: str) -> None:
        (self.root / "nginx.conf").write_text(main_conf(self.root, body))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        conf = str(self.root / "nginx.conf")
        args = [self.binary, "-p", str(self.root), "-c", conf, "-g", "daemon off;"]
        self.process = launch(args, self.port, self.log, "nginx")
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


class Nginx(NginxProcess):
    """A bare proxy. `limit()` makes it answer every request with 429 and Retry-After, as
    Docker Hub does when a client passes its pull limit; `unlimit()` lets requests through
    again."""

    def __init__(self, root: Path, backend_port: int) -> None:
        super().__init__(root)
        self.flag = root / "limited"
        self._write_conf(
            "  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            "    client_max_body_size 0;\n"
            f'    add_header RateLimit-Limit "{RATELIMIT_LIMIT};w=21600" always;\n'
            f'    add_header RateLimit-Remaining "{RATELIMIT_REMAINING};w=21600" always;\n'
            "    location / {\n"
            f"      if (-f {self.flag}) {{\n"
            f"        add_header Retry-After {RETRY_AFTER} always;\n"
            "        return 429;\n"
            "      }\n"
            f"      proxy_pass http://127.0.0.1:{backend_port};\n"
            "      proxy_set_header Host $http_host;\n"
            "      proxy_buffering off;\n"
            "      proxy_request_buffering off;\n"
            "    }\n"
            "  }"
        )

    def limit(self) -> None:
        self.flag.touch()

    def unlimit(self) -> None:
        self.flag.unlink(missing_ok=True)

    def answered(self, status: int) -> int:
        """Requests its access log shows answered with `status`."""
        return sum(f'" {status} ' in line for line in self.access_log.read_text().splitlines())


class RegistryNginx(NginxProcess):
    """The shipped template, rendered for registry processes on local ports, serving
    plain HTTP on `port` and TLS on `tls_address`:`tls_port` with a given certificate."""

    def __init__(
        self,
        root: Path,
        registry_ports: list[int],
        blob_root: Path,
        cert: Path,
        key: Path,
        tls_address: str = "127.0.0.1",
    ) -> None:
        super().__init__(root)
        self.tls_address = tls_address
        self.tls_port = free_port()
        values = {
            "REGISTRY_SERVERS": " ".join(f"server 127.0.0.1:{p};" for p in registry_ports),
            "REGISTRY_BLOB_ROOT": str(blob_root),
            "NGINX_HTTP_PORT": f"127.0.0.1:{self.port}",
            "NGINX_HTTPS_PORT": f"{tls_address}:{self.tls_port}",
            "NGINX_SERVER_NAME": "localhost",
            "NGINX_TLS_CERT": str(cert),
            "NGINX_TLS_KEY": str(key),
        }
        self._write_conf(render(TEMPLATE.read_text(), values))
