"""A real S3 endpoint for tests: moto's server over HTTP, behind a switchable TCP relay
so that a test can cut the registry off from S3 (and restore it) without losing data."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import boto3

from tests.peers.tools import free_port, stop, tail, wait_for_port

# S3 refuses multipart parts under 5 MiB (but the last); the test server is told a
# smaller limit, and the tests' part size matches it, to reach every path with small data.
MIN_PART = 256 * 1024
_buckets = itertools.count()


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.log = Path(tempfile.mkdtemp(prefix="registry-moto-")) / "moto.log"
        moto = Path(sys.executable).parent / "moto_server"
        env = {**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(MIN_PART)}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            wait_for_port(self.port, self.process)  # type: ignore[arg-type]
        except Exception as exc:
            raise RuntimeError(f"moto_server did not start:\n{tail(self.log)}") from exc
        self.relay = Relay(self.port)
        self.client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    @property
    def url(self) -> str:
        """The endpoint to give the registry: through the relay."""
        return f"http://127.0.0.1:{self.relay.port}"

    def new_bucket(self) -> str:
        name = f"registry-{os.getpid()}-{next(_buckets)}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def multipart_uploads(self, bucket: str) -> list[str]:
        found = self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [upload["Key"] for upload in found]

    def stop(self) -> None:
        self.relay.close()
        stop(self.process)  # type: ignore[arg-type]


class Relay:
    """Forwards TCP connections from its own port to the target; `cut()` drops every
    connection and refuses new ones until `restore()`; `stall()` accepts connections but
    holds every byte back (a server that has hung) until `resume()`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()
        self.restore()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        self.close()

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
