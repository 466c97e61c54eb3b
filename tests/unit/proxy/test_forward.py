"""URL and header rewriting between upstream and client."""

from __future__ import annotations

from multidict import CIMultiDict
from yarl import URL

from proxy.forward import response_headers, rewrite_link, rewrite_url

UP = URL("http://10.0.0.5:5000")
PUB = URL("https://registry.example.com")


def test_upstream_absolute_url_is_rewritten_with_query_intact() -> None:
    value = "http://10.0.0.5:5000/v2/a/blobs/uploads/u1?_state=ab%2Bcd%3D&x=1"
    assert rewrite_url(value, UP, PUB) == (
        "https://registry.example.com/v2/a/blobs/uploads/u1?_state=ab%2Bcd%3D&x=1"
    )


def test_path_only_url_is_rewritten() -> None:
    assert rewrite_url("/v2/a/blobs/x", UP, PUB) == "https://registry.example.com/v2/a/blobs/x"


def test_foreign_url_is_untouched() -> None:
    value = "https://s3.example/bucket/x?sig=a%2Fb"
    assert rewrite_url(value, UP, PUB) == value


def test_link_header() -> None:
    value = '<http://10.0.0.5:5000/v2/_catalog?last=b&n=1>; rel="next"'
    assert rewrite_link(value, UP, PUB) == (
        '<https://registry.example.com/v2/_catalog?last=b&n=1>; rel="next"'
    )


def test_headers_are_allow_listed() -> None:
    upstream = CIMultiDict(
        {
            "Content-Type": "application/json",
            "WWW-Authenticate": 'Bearer realm="http://internal/token"',
            "Set-Cookie": "x=1",
            "Connection": "keep-alive",
            "Docker-Content-Digest": "sha256:" + "a" * 64,
            "Location": "http://10.0.0.5:5000/v2/x",
        }
    )
    out = response_headers(upstream, UP, PUB)
    assert set(out) == {"Content-Type", "Docker-Content-Digest", "Location"}
    assert out["Location"] == "https://registry.example.com/v2/x"
