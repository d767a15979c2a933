"""The decision function, called directly: (policy, identity, permission, namespace) ->
allowed or not. Deny wins, nothing is allowed unless a rule allows it, ``admin`` stands
for every permission, ``*`` entries apply to every identity."""

from __future__ import annotations

import pytest

from broadcaster._auth import (
    AccessPolicy,
    Authorizer,
    Pattern,
    Permission,
    decide,
    parse_policy,
)
from broadcaster._auth._authorizer import AccessDenied

P = Permission

POLICY = parse_policy({
    "identities": {
        "shim-a": {"publish": ["a"], "create": ["a"]},
        "kubelet": {"subscribe": {"allow": ["k8s.*", "a"], "deny": ["k8s.private"]},
                    "stats": ["*"]},
        "ops": {"admin": ["*"], "publish": {"deny": ["frozen"]}},
        "tenant-*": {"subscribe": ["shared"]},
        "*": {"stats": {"deny": ["secret*"]}, "subscribe": ["public"]},
        "mallory": {"admin": {"deny": ["*"]}, "subscribe": ["public"]},
    },
}).access


@pytest.mark.parametrize(("identity", "permission", "namespace", "allowed"), [
    # only what is allowed
    ("shim-a", P.PUBLISH, "a", True),
    ("shim-a", P.PUBLISH, "b", False),
    ("shim-a", P.SUBSCRIBE, "a", False),
    ("shim-a", P.STATS, "a", False),
    ("shim-a", P.CREATE, "a", True),
    ("shim-a", P.CREATE, "b", False),
    # patterns; deny wins over allow
    ("kubelet", P.SUBSCRIBE, "k8s.io", True),
    ("kubelet", P.SUBSCRIBE, "k8s.private", False),
    ("kubelet", P.SUBSCRIBE, "k8s", False),  # "k8s.*" needs the dot
    ("kubelet", P.STATS, "anything", True),
    ("kubelet", P.STATS, "secret-x", False),  # the "*" entry's deny applies to everyone
    ("kubelet", P.PUBLISH, "k8s.io", False),
    # admin is every permission, an explicit deny still wins
    ("ops", P.PUBLISH, "x", True),
    ("ops", P.SUBSCRIBE, "x", True),
    ("ops", P.CREATE, "x", True),
    ("ops", P.PUBLISH, "frozen", False),
    ("ops", P.SUBSCRIBE, "frozen", True),
    ("ops", P.ADMIN, None, True),  # server-wide: admin on "*"
    ("kubelet", P.ADMIN, None, False),
    ("ops", P.STATS, "secret-1", False),
    # denying admin denies everything
    ("mallory", P.SUBSCRIBE, "public", False),
    # glob identities and the "*" entry
    ("tenant-7", P.SUBSCRIBE, "shared", True),
    ("tenant-7", P.SUBSCRIBE, "public", True),
    ("tenant", P.SUBSCRIBE, "shared", False),
    ("local", P.SUBSCRIBE, "public", True),
    ("anonymous", P.PUBLISH, "public", False),
])
def test_decisions(identity: str, permission: Permission, namespace: str | None,
                   allowed: bool) -> None:
    assert decide(POLICY, identity, permission, namespace).allowed is allowed


def test_the_decision_names_the_rule() -> None:
    assert decide(POLICY, "kubelet", P.SUBSCRIBE, "k8s.private").rule == \
        "identities.kubelet.subscribe.deny 'k8s.private'"
    assert decide(POLICY, "ops", P.PUBLISH, "x").rule == "identities.ops.admin.allow '*'"
    assert decide(POLICY, "nobody", P.PUBLISH, "x").rule is None


def test_an_empty_policy_allows_nothing() -> None:
    assert not decide(AccessPolicy(), "local", P.SUBSCRIBE, "default").allowed


@pytest.mark.parametrize(("pattern", "value", "matches"), [
    ("*", "anything", True), ("*", "", True), ("*", None, True),
    ("a", "a", True), ("a", "ab", False), ("a", None, False),
    ("a*", "a", True), ("a*", "abc", True), ("a*", "ba", False),
    ("*.io", "k8s.io", True), ("*.io", "k8s.iox", False),
    ("a*b*c", "a-b-c", True), ("a*b*c", "abx", False),
    ("a.b", "aXb", False),  # only * is special
])
def test_patterns(pattern: str, value: str | None, matches: bool) -> None:
    assert Pattern(pattern).matches(value) is matches


def test_the_authorizer_caches_per_policy_and_counts_denials() -> None:
    current = [parse_policy({"identities": {"a": {"publish": ["x"]}}})]
    authorizer = Authorizer(lambda: current[0], clock=lambda: 0.0)
    assert authorizer.allowed("a", P.PUBLISH, "x")
    with pytest.raises(AccessDenied, match=r"^events\[2\]\.namespace: identity 'a' lacks "
                                           r"permission 'publish' on namespace 'y'$"):
        authorizer.check("a", P.PUBLISH, "y", "events[2].namespace")
    assert authorizer.denied == {"publish": 1}
    current[0] = parse_policy({"identities": {"a": {"publish": ["y"]}}})  # a reload
    assert not authorizer.allowed("a", P.PUBLISH, "x")
    assert authorizer.allowed("a", P.PUBLISH, "y")


def test_without_a_policy_everything_is_allowed() -> None:
    authorizer = Authorizer(lambda: None, clock=lambda: 0.0)
    assert not authorizer.enforcing
    authorizer.check("anonymous", P.ADMIN, None)


def test_denials_are_logged_once_per_identity_and_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    authorizer = Authorizer(lambda: parse_policy({}), clock=lambda: now[0], log_interval=60)
    with caplog.at_level("WARNING", logger="broadcaster.security"):
        for _ in range(1000):
            authorizer.denial("a", P.PUBLISH, "x")
        authorizer.denial("b", P.SUBSCRIBE, "x")
        now[0] = 60.0
        authorizer.denial("a", P.STATS, "y")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("access denied identity='a' reason=publish permission=publish "
                               "namespace=x rule=none allows suppressed=0")
    assert "identity='b'" in lines[1]
    assert lines[2].endswith("suppressed=999")
    assert authorizer.denied == {"publish": 1000, "subscribe": 1, "stats": 1}
