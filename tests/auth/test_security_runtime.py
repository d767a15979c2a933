"""The server's security object: who a call is on each kind of listener, /metrics
scrapes, and reloading every file with listeners told of a new policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broadcaster._auth import (
    ListenerSecurity,
    Permission,
    SecurityConfig,
    Unauthenticated,
    new_token,
    token_line,
)
from broadcaster._core._errors import InvalidArgument
from broadcaster.grpc._security import Security

TOKEN, OTHER = new_token(), new_token()
CERT = {"x509_subject": [b"CN=x"], "peer_dns": [b"client.example"]}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    tokens, metrics, policy = tmp_path / "tokens", tmp_path / "metrics", tmp_path / "policy"
    tokens.write_text(token_line(TOKEN, "kubelet") + "\n")
    metrics.write_text(token_line(OTHER, "prometheus") + "\n")
    policy.write_text('[identities.kubelet]\nsubscribe = ["a"]\n')
    return {"tokens": tokens, "metrics": metrics, "policy": policy}


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_identities_per_listener(files: dict[str, Path]) -> None:
    security = Security(SecurityConfig(token_file=str(files["tokens"])), clock=lambda: 0.0)
    token, none = ListenerSecurity(auth="token"), ListenerSecurity()
    mtls = ListenerSecurity(tls=True, auth="mtls")
    ident = security.identify
    assert ident(token, unix=False, auth_context={}, metadata=bearer(TOKEN), peer="p") == \
        "kubelet"
    assert ident(none, unix=True, auth_context={}, metadata=None, peer="p") == "local"
    assert ident(none, unix=False, auth_context={}, metadata=[], peer="p") == "anonymous"
    # a token on a listener that does not require one still identifies the caller
    assert ident(none, unix=True, auth_context={}, metadata=bearer(TOKEN), peer="p") == \
        "kubelet"
    assert ident(mtls, unix=False, auth_context=CERT, metadata=None, peer="p") == \
        "client.example"
    with pytest.raises(Unauthenticated, match=r"requires a bearer token") as info:
        ident(token, unix=False, auth_context={}, metadata=None, peer="p")
    assert info.value.reason == "no_token"
    for metadata in (bearer(OTHER), [("authorization", "Basic x")]):
        with pytest.raises(Unauthenticated) as info:
            ident(none, unix=True, auth_context={}, metadata=metadata, peer="p")
        assert info.value.reason == "invalid_token"
    assert security.authorizer.denied == {"no_token": 1, "invalid_token": 2}


def test_scrapes(files: dict[str, Path]) -> None:
    open_metrics = Security(SecurityConfig(), clock=lambda: 0.0)
    assert open_metrics.identify_scrape(None, "p") == "anonymous"
    security = Security(SecurityConfig(metrics_token_file=str(files["metrics"])),
                        clock=lambda: 0.0)
    assert security.identify_scrape(f"Bearer {OTHER}", "p") == "prometheus"
    for header in (None, f"Bearer {TOKEN}"):
        with pytest.raises(Unauthenticated, match=r"^authorization: /metrics requires"):
            security.identify_scrape(header, "p")


def test_reload_tells_policy_listeners_and_keeps_a_good_policy(
        files: dict[str, Path]) -> None:
    security = Security(SecurityConfig(policy_file=str(files["policy"]),
                                       token_file=str(files["tokens"])), clock=lambda: 0.0)
    seen = []
    security.on_policy_change(seen.append)
    assert security.reload() and len(seen) == 1
    files["policy"].write_text("[identities.kubelet]\nsubscribe = 3\n")
    assert not security.reload() and len(seen) == 1
    assert security.authorizer.allowed("kubelet", Permission.SUBSCRIBE, "a")
    files["tokens"].write_text(token_line(OTHER, "kubelet") + "\n")
    os.utime(files["tokens"], ns=(1, 1))
    security.check()  # the token file changed: the new token works, the old does not
    with pytest.raises(Unauthenticated):
        security.identify(ListenerSecurity(auth="token"), unix=False, auth_context={},
                          metadata=bearer(TOKEN), peer="p")
    families = {f.name: f for f in security.metrics()}
    reloads = {tuple(s.labels.values()): s.value for s in families["broadcaster_security_reloads"]
               .samples if s.name.endswith("_total")}
    assert reloads[("policy", "ok")] == 1 and reloads[("policy", "refused")] == 1
    assert reloads[("tokens", "ok")] == 3  # two SIGHUPs, one change


@pytest.mark.parametrize("key", ["policy_file", "token_file", "metrics_token_file"])
def test_a_missing_file_at_start_names_its_setting(tmp_path: Path, key: str) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(InvalidArgument) as info:
        Security(SecurityConfig(**{key: str(missing)}), clock=lambda: 0.0)
    assert str(info.value) == (f"security.{key}: cannot read '{missing}': "
                               "No such file or directory")
