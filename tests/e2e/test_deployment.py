"""docker-compose.yml (with and without docker-compose.s3.yml) and the Dockerfile stay in
step with the code: the files are valid (`docker-compose config`), every REGISTRY_*
variable in them is a real setting and the settings load, nginx gets every variable its
template uses, the image's healthcheck command works against a running registry, and the
images come from variables whose defaults are Docker Hub's. test_image.py builds and runs
the image; test_compose.py runs the stack."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from registry.config import Settings, load_settings
from tests.peers.registry import RegistryProcess
from tests.peers.tools import need

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "docker-compose.yml"
S3 = ROOT / "docker-compose.s3.yml"
TEMPLATE = ROOT / "nginx" / "registry.conf.template"


def setting_variables(cls: type = Settings, prefix: str = "REGISTRY_") -> set[str]:
    """Every REGISTRY_* variable the settings read."""
    names = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        name = prefix + f.name.upper()
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            names |= setting_variables(kind, name + "_")
        else:
            names.add(name)
    return names


def resolved(env: dict[str, str] | None = None, *extra: Path) -> dict[str, Any]:
    """The files as docker-compose resolves them, with `env` for their variables."""
    binary = need("docker-compose")
    files = [arg for path in (COMPOSE, *extra) for arg in ("-f", str(path))]
    result = subprocess.run(
        [binary, *files, "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return dict(yaml.safe_load(result.stdout))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return resolved()


@pytest.fixture(scope="module")
def compose_s3() -> dict[str, Any]:
    return resolved(None, S3)


def test_images_are_docker_hubs_unless_named(compose_s3: dict[str, Any]) -> None:
    services = compose_s3["services"]
    assert services["nginx"]["image"] == "nginx:1.27-alpine"
    assert services["postgres"]["image"] == "postgres:16-alpine"
    assert services["minio"]["image"].startswith("minio/minio:RELEASE.")
    assert services["registry"]["build"]["args"] == {"PYTHON_IMAGE": "python:3.11-slim"}
    names = ("NGINX", "POSTGRES", "MINIO", "MC", "PYTHON")
    env = {f"{name}_IMAGE": f"local/{name.lower()}" for name in names}
    local = resolved(env, S3)["services"]
    assert local["nginx"]["image"] == "local/nginx"
    assert local["postgres"]["image"] == "local/postgres"
    assert local["minio"]["image"] == "local/minio"
    assert local["minio-bucket"]["image"] == "local/mc"
    assert local["registry"]["build"]["args"] == {"PYTHON_IMAGE": "local/python"}
    # The Dockerfile builds on whichever it is given.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2


def test_the_stack_has_its_parts(compose: dict[str, Any], compose_s3: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"nginx", "registry", "postgres"}
    assert services["registry"]["deploy"]["replicas"] == 2
    assert set(compose["volumes"]) == {"postgres", "blobs"}
    # The S3 file adds MinIO and its bucket, and the registry waits for the bucket.
    assert set(compose_s3["services"]) == set(services) | {"minio", "minio-bucket"}
    assert compose_s3["services"]["registry"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio-bucket": {"condition": "service_completed_successfully"},
    }
    assert set(compose_s3["volumes"]) == {"postgres", "blobs", "minio"}
    # Secrets are files, never values in the compose file.
    assert set(compose_s3["secrets"]) == {
        "postgres_password",
        "minio_password",
        "token_key",
        "sealing_key",
        "admin_password",
        "tls_cert",
        "tls_key",
    }
    for service in compose_s3["services"].values():
        for name in service.get("environment", {}):
            if "PASSWORD" in name or "SECRET" in name:
                assert name.endswith("_FILE"), name


@pytest.mark.parametrize("store", ["filesystem", "s3"])
def test_registry_environment_is_real_settings(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    stack = request.getfixturevalue("compose" if store == "filesystem" else "compose_s3")
    environment = stack["services"]["registry"]["environment"]
    known = setting_variables()
    for name in environment:
        assert name in known or name.removesuffix("_FILE") in known, f"{name} is not a setting"
    # The secrets, as compose mounts them, are read and the settings pass validation.
    environ = {}
    for name, value in environment.items():
        if name.endswith("_FILE"):
            secret = tmp_path / Path(value).name
            secret.write_text("secret-of-" + secret.name + "\n")
            value = str(secret)
        environ[name] = value
    settings = load_settings(None, environ)
    assert settings.storage.driver == store
    if store == "s3":
        assert settings.storage.s3.secret_key == "secret-of-minio_password"
    else:
        assert settings.storage.accel_redirect == "/_blobs/"
    assert settings.admin_password == "secret-of-admin_password"
    assert ":secret-of-postgres_password@postgres:5432/" in settings.database_url


def test_nginx_gets_every_template_variable(compose: dict[str, Any]) -> None:
    service = compose["services"]["nginx"]
    used = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    assert used == set(service["environment"])
    # docker-compose 1.x writes short syntax: source:target:mode.
    assert f"{TEMPLATE}:/etc/nginx/templates/registry.conf.template:ro" in service["volumes"]


def test_the_image_runs_unprivileged_and_its_healthcheck_works(tmp_path: Path) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER registry$", dockerfile, re.M)
    command = json.loads(re.search(r"CMD (\[.*\])\n", dockerfile.split("HEALTHCHECK")[1])[1])
    assert command[:2] == ["python", "-c"]
    server = RegistryProcess(tmp_path / "data").start()
    try:
        env = {**server.env, "REGISTRY_HTTP_PORT": str(server.port)}
        check = subprocess.run(["python3", "-c", command[2]], env=env, timeout=30)
        assert check.returncode == 0
    finally:
        server.stop()
    check = subprocess.run(["python3", "-c", command[2]], env=env, capture_output=True, timeout=30)
    assert check.returncode != 0
