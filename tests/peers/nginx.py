"""A private nginx in the foreground, as a reverse proxy in front of a local server.

`limit()` makes it answer every request with 429 and Retry-After, as Docker Hub does when
a client passes its pull limit; `unlimit()` lets requests through again."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.peers.tools import free_port, need, stop, tail, wait_for_port

RETRY_AFTER = "7"


class Nginx:
    def __init__(self, root: Path, backend_port: int) -> None:
        self.binary = need("nginx")
        self.root = root
        self.port = free_port()
        self.flag = root / "limited"
        self.log = root / "error.log"
        self.access_log = root / "access.log"
        root.mkdir(parents=True, exist_ok=True)
        temp = "".join(
            f"  {kind}_temp_path {root / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (root / "nginx.conf").write_text(
            # Workers must see the test's private folders (nginx ignores this unless root).
            "user root;\n"
            f"pid {root / 'nginx.pid'};\n"
            f"error_log {self.log} info;\n"
            "events {}\n"
            "http {\n"
            f"  access_log {self.access_log};\n"
            f"{temp}"
            "  server {\n"
            f"    listen 127.0.0.1:{self.port};\n"
            "    client_max_body_size 0;\n"
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
            "  }\n"
            "}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        self.process = subprocess.Popen(
            [
                self.binary,
                "-p",
                str(self.root),
                "-c",
                str(self.root / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, self.process)
        except Exception as exc:
            raise RuntimeError(f"nginx did not start:\n{tail(self.log)}") from exc
        return self

    def limit(self) -> None:
        self.flag.touch()

    def unlimit(self) -> None:
        self.flag.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None
