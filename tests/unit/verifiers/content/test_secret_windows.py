"""Secrets in binaries and in files searched as they stream by: the anchored rules around their
anchors, windows that find a secret across any chunk boundary exactly once, and bounded
memory."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.verifiers.content.conftest import (
    ALNUM,
    aws_key_id,
    docker_config,
    github_token,
    random_text,
    rsa_pem,
)
from verifiers.content.secret_patterns import Match, keys_and_tokens
from verifiers.content.secret_windows import (
    MARGIN,
    OVERLAP,
    WindowedSearch,
    near_anchors,
    search_bytes,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
KEYS = [f"\n{aws_key_id()}\n", f" {github_token()}\n", f"\n{rsa_pem()}\n"]
"""What is planted: each is exactly one match, whatever surrounds it."""
LONG = [
    "\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,"
    + random_text("0123456789ABCDEF", 32)
    + "\n\n"
    + "\n".join(random_text(ALNUM + "+/", 64) for _ in range(12))
    + "\n-----END RSA PRIVATE KEY-----\n",
    " github_pat_" + random_text(ALNUM + "_", 255) + " ",
    " glpat-" + random_text(ALNUM, 400) + " ",
]
"""Longer than most: an encrypted key's body starts after its headers, and tokens that run
past a few hundred characters."""
FILLER = "abcdefgh ijklmnop\nqrstuvwxyz-"
"""Text no anchor can be made of."""


def planted(size: int, where: list[tuple[int, int]], seed: int) -> bytes:
    """``size`` bytes of filler with ``KEYS[k]`` inserted at each (offset, k)."""
    chars = random.Random(seed).choices(FILLER, k=size)
    for offset, key in sorted(where, reverse=True):
        chars.insert(min(offset, len(chars)), KEYS[key])
    return "".join(chars).encode()


def windowed(path: str, data: bytes, chunks: list[int], window: int) -> list[Match]:
    """What a :class:`WindowedSearch` reports for ``data`` fed in pieces of the given sizes."""
    found: list[Match] = []
    sink = WindowedSearch(
        lambda d, binary: search_bytes(path, d, 3.5, binary=binary), found.append, window=window
    )
    at, sizes = 0, iter(chunks)
    while at < len(data):
        step = next(sizes, 4096)
        sink.feed(data[at : at + step])
        at += step
    sink.close()
    return found


def kinds(matches: list[Match]) -> list[tuple[str, str]]:
    return sorted((m.rule_id, m.evidence) for m in matches)


@FAST
@given(
    size=st.integers(0, 40_000),
    where=st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, len(KEYS) - 1)), max_size=6),
    chunks=st.lists(st.integers(1, 9000), max_size=40),
    window=st.integers(OVERLAP, 12_000),
    binary=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_windows_find_each_secret_once_across_any_chunking(
    size: int,
    where: list[tuple[int, int]],
    chunks: list[int],
    window: int,
    binary: bool,
    seed: int,
) -> None:
    data = (b"\0" if binary else b"") + planted(size, where, seed)
    whole = search_bytes("app/data.txt", data, 3.5, binary=binary)
    assert len(whole) == len(where)  # every planted key, searched in one piece
    assert kinds(windowed("app/data.txt", data, chunks, window)) == kinds(whole)


def test_each_key_at_every_offset_around_a_window_edge_is_found_once() -> None:
    """Across the chunk that ends the first window, and across the point it decides up to: a
    PEM header whose body is in the next chunk, a token cut short by the chunk's end."""
    window = 8192
    for key in (*KEYS, *LONG):
        (expected,) = kinds(search_bytes("app/x.log", key.encode(), 3.5, binary=False))
        step = 1 if len(key) < 300 else 7
        for edge in (window - MARGIN, window):
            for start in range(edge - len(key) - 3, edge + 3, step):
                data = b"x" * start + key.encode() + b"y" * 5000
                found = windowed("var/log/app.log", data, [window] * 3, window)
                assert kinds(found) == [expected], (key[:12], start)


def test_memory_is_a_window_a_chunk_and_the_overlap() -> None:
    seen: list[int] = []

    def search(data: bytes, binary: bool) -> list[Match]:
        seen.append(len(data))
        return []

    sink = WindowedSearch(search, lambda m: None)
    for _ in range(64):
        sink.feed(b"z" * 300_000)
    sink.close()
    assert len(seen) > 10 and max(seen) <= 1024 * 1024 + 300_000 + OVERLAP


def test_a_nul_in_front_hides_no_key_but_keeps_the_generic_rule_out() -> None:
    key_id, value = aws_key_id(), random_text(ALNUM, 32)
    data = b"\0" + f"AWS_ACCESS_KEY_ID={key_id}\ndb_password = {value}\n".encode()
    assert kinds(search_bytes("app/settings.env", data, 3.5, binary=True)) == [
        ("secret.aws-access-key", "key id AKIA… (20 chars)")
    ]
    text = data[1:]
    assert {m.rule_id for m in search_bytes("app/settings.env", text, 3.5, binary=False)} == {
        "secret.aws-access-key"
    }  # as a text window: the key, and the generic rule only where nothing else matched
    assert kinds(search_bytes("app/settings.env", text[text.index(b"db_") :], 3.5, binary=False))
    docker = b"\0" + docker_config(random_text(ALNUM, 20)).encode()
    (found,) = search_bytes("root/.docker/config.json", docker, 3.5, binary=True)
    assert found.rule_id == "secret.registry-credentials" and found.evidence.startswith("auth …")


def test_only_the_stretches_around_anchors_are_searched() -> None:
    token = github_token()
    data = bytes(range(256)) * 2000 + f" {token} ".encode() + bytes(range(256)) * 2000
    (found,) = near_anchors(data)
    assert found.rule_id == "secret.github-token"
    assert data[found.end - len(token) : found.end] == token.encode()  # offsets into the bytes
    pem = rsa_pem().encode()
    both = pem + b"\0" * 100 + pem  # two keys, stretches merged or not: each found once
    assert [m.rule_id for m in near_anchors(both)] == ["secret.private-key"] * 2
    assert near_anchors(b"\0" * 10_000) == []
    for secret in LONG:  # the stretch holds the whole of each
        assert kinds(near_anchors(b"\0" + secret.encode())) == kinds(keys_and_tokens(secret))
