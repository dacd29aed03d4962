import pytest

from registry.digest import Digest
from registry.errors import DigestInvalid, NameInvalid, TagInvalid
from registry.names import check_name, check_tag, namespace_of


def test_digest_round_trip() -> None:
    d = Digest.of(b"abc")
    assert str(d) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert Digest.parse(str(d)) == d
    assert Digest.of(b"abc", "sha512").algorithm == "sha512"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        ":abc",
        "SHA256:" + "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:../../etc",
        "sha384:" + "a" * 96,
        "sha256:" + "a" * 64 + "/x",
    ],
)
def test_invalid_digests(text: str) -> None:
    with pytest.raises(DigestInvalid):
        Digest.parse(text)


@pytest.mark.parametrize("name", ["a", "team/app", "a/b/c/d", "a.b_c__d-e--f", "x9/y-1"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "A", "a/", "/a", "a//b", "a/../b", "a_", "a___b", ".a", "a" * 256]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(NameInvalid):
        check_name(name)


def test_tags() -> None:
    assert check_tag("v1.0_rc-1") == "v1.0_rc-1"
    for bad in ("", ".v", "-v", "a" * 129, "v/1", "v:1"):
        with pytest.raises(TagInvalid):
            check_tag(bad)


def test_namespace() -> None:
    assert namespace_of("busybox") == "library"
    assert namespace_of("team/sub/app") == "team"
