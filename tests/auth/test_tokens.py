"""The token file holds hashes only; tokens are found by their hash and compared in
constant time; the file's errors name the line."""

from __future__ import annotations

import re

import pytest

from broadcaster._auth import TokenError, hash_token, new_token, parse_tokens, token_line


def test_tokens_are_random_and_found_by_their_hash() -> None:
    tokens = [new_token() for _ in range(3)]
    assert len(set(tokens)) == 3
    assert all(re.fullmatch(r"bct_[A-Za-z0-9_-]{43}", t) for t in tokens)
    table = parse_tokens("# who is who\n\n" + "\n".join(
        token_line(t, f"id-{i}") for i, t in enumerate(tokens)) + "\n")
    assert [table.identify(t) for t in tokens] == ["id-0", "id-1", "id-2"]
    assert table.identify(new_token()) is None
    assert table.identify(tokens[0][:-1]) is None
    assert table.identify("short") is None
    # the file never holds the token itself
    assert tokens[0] not in token_line(tokens[0], "x")


def test_identities_may_hold_spaces_and_uris() -> None:
    token = new_token()
    table = parse_tokens(f"sha256:{hash_token(token)}\tspiffe://example.org/ns/a/sa/b  \n")
    assert table.identify(token) == "spiffe://example.org/ns/a/sa/b"


@pytest.mark.parametrize(("text", "error"), [
    ("bct_plaintexttoken  kubelet\n", r"^tokens:1: expected 'sha256:<64 hex digits> IDENTITY'"),
    (f"\nsha256:{'0' * 63}  a\n", r"^tokens:2: expected"),
    (f"sha256:{'0' * 64}\n", r"^tokens:1: expected"),
    (f"sha256:{'0' * 64}  local\n", r"^tokens:1: identity 'local' is reserved"),
    (f"sha256:{'0' * 64}  *\n", r"^tokens:1: identity '\*' is reserved"),
    (f"sha256:{'0' * 64}  a\nsha256:{'0' * 64}  b\n", r"^tokens:2: this hash is already"),
])
def test_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(TokenError, match=error):
        parse_tokens(text)
