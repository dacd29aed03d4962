"""A mirror's upstream that must sign what it serves (issue 35, item 5):
`mirror.upstreams[].signed_by` names public keys, and the mirror serves and caches from
that upstream only images one of them signed (cosign's `.sig` tag there, or its
referrers); the signatures themselves pass, and the platforms of an index it served.
What it refuses is a 403 DENIED that names the setting, and nothing of it is cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.config import ConfigError, load_settings
from registry.mediatypes import OCI_INDEX, OCI_MANIFEST
from registry.signatures import signature_tag
from tests.api.test_trust import Signer, sign
from tests.helpers import assert_error, index_of, push_image, put_manifest, scraped
from tests.proxy.conftest import MirrorFactory, Upstream, client_of, unique

MIRROR_UPSTREAMS = "REGISTRY_MIRROR_UPSTREAMS"
ACCEPT = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"}


@pytest.mark.anyio
async def test_only_what_a_listed_key_signed_is_served_and_cached(
    upstream: Upstream, make_mirror: MirrorFactory, tmp_path: Path
) -> None:
    ours, theirs = Signer(), Signer()
    key = tmp_path / "release.pub"
    key.write_text(ours.pem)
    repo = unique("signed")
    async with upstream.client() as there:
        signed, _ = await push_image(there, repo, "signed", layers=[b"signed"])
        await sign(there, repo, signed, ours)
        referred, _ = await push_image(there, repo, "referred", layers=[b"referrers form"])
        await sign(there, repo, referred, ours, referrer=True)
        other, _ = await push_image(there, repo, "other", layers=[b"other key"])
        await sign(there, repo, other, theirs)
        await push_image(there, repo, "unsigned", layers=[b"unsigned"])
        amd, amd_body = await push_image(there, repo, "amd64", layers=[b"amd"])
        loose, _ = await push_image(there, repo, "loose", layers=[b"loose"])
        index = index_of([(OCI_MANIFEST, amd_body, {"os": "linux", "architecture": "amd64"})])
        top = await put_manifest(there, repo, "multi", index, OCI_INDEX)
        await sign(there, repo, top, ours)
    upstreams = json.dumps([{"url": upstream.url, "signed_by": str(key)}])
    app = make_mirror(mirror_upstreams=upstreams)
    async with client_of(app) as mirror:
        r = await mirror.get(f"/v2/{repo}/manifests/signed", headers=ACCEPT)
        assert r.status_code == 200 and r.headers["docker-content-digest"] == signed
        # Signed as a referrer (the upstream has the referrers API).
        r = await mirror.get(f"/v2/{repo}/manifests/referred", headers=ACCEPT)
        assert r.status_code == 200 and r.headers["docker-content-digest"] == referred
        for tag in ("other", "unsigned"):
            r = await mirror.get(f"/v2/{repo}/manifests/{tag}", headers=ACCEPT)
            message = assert_error(r, 403, "DENIED")["message"]
            assert (
                "mirror.upstreams[].signed_by" in message and "neither served nor cached" in message
            )
        # Signatures pass, so that clients can verify.
        r = await mirror.get(f"/v2/{repo}/manifests/{signature_tag(signed)}", headers=ACCEPT)
        assert r.status_code == 200
        # A signed index: it and its platform by digest; a loose image by digest is not.
        assert (await mirror.get(f"/v2/{repo}/manifests/multi", headers=ACCEPT)).status_code == 200
        assert (await mirror.get(f"/v2/{repo}/manifests/{amd}", headers=ACCEPT)).status_code == 200
        r = await mirror.get(f"/v2/{repo}/manifests/{loose}", headers=ACCEPT)
        assert_error(r, 403, "DENIED")
        # Nothing refused was cached; the refusals are counted.
        tags = (await mirror.get(f"/v2/{repo}/tags/list")).json()["tags"]
        assert sorted(tags) == sorted(["signed", "referred", "multi", signature_tag(signed)])
        await app.state.registry.mirror.counters.flush()
        metrics = scraped((await mirror.get("/metrics")).text)
        assert metrics["registry_mirror_unsigned_refused_total"] == 3


def test_a_signed_by_key_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "bad.pub").write_text("not a key")
    for path, said in ((tmp_path / "bad.pub", "bad.pub: "), (tmp_path / "gone.pub", "cannot read")):
        upstreams = json.dumps([{"url": "https://ghcr.io", "signed_by": str(path)}])
        with pytest.raises(ConfigError, match="signed_by") as refused:
            load_settings(None, {"REGISTRY_MIRROR_ENABLED": "true", MIRROR_UPSTREAMS: upstreams})
        assert said in str(refused.value)
