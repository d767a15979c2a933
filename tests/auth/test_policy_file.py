"""The policy file: what it accepts, and errors that name the key (or the line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broadcaster._auth import IdentityLimits, Permission, PolicyError, load_policy, parse_policy

EXAMPLE = Path(__file__).parents[2] / "examples" / "policy.toml"


def test_the_example_policy_loads() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.rules > 0
    assert policy.access.entries_for("local")


def test_lists_are_allow_lists_and_tables_have_allow_and_deny() -> None:
    policy = parse_policy({"identities": {"a": {
        "publish": ["x", "y*"], "subscribe": {"allow": ["*"], "deny": ["z"]}}}})
    (entry,) = policy.access.entries
    assert [p.text for p in entry.grants[Permission.PUBLISH].allow] == ["x", "y*"]
    assert [p.text for p in entry.grants[Permission.SUBSCRIBE].deny] == ["z"]
    assert policy.rules == 4


def test_limits_merge_over_the_star_entry() -> None:
    policy = parse_policy({"limits": {"*": {"publish_rate": 100, "max_streams": 4},
                                      "big": {"publish_rate": 5000.5}}})
    assert policy.limits.for_identity("small") == IdentityLimits(publish_rate=100.0,
                                                                 max_streams=4)
    assert policy.limits.for_identity("big") == IdentityLimits(publish_rate=5000.5,
                                                               max_streams=4)


@pytest.mark.parametrize(("data", "error"), [
    ({"identity": {}}, r"^identity: unknown section \(expected identities, limits\)$"),
    ({"identities": {"a": {"publsh": ["x"]}}},
     r"^identities\.a\.publsh: unknown permission \(expected one of publish, create, "
     r"subscribe, stats, admin\)$"),
    ({"identities": {"a": {"publish": "x"}}}, r"^identities\.a\.publish: must be a list"),
    ({"identities": {"spiffe://x/y": {"publish": ["ok", "k8s io"]}}},
     r"^identities\.\"spiffe://x/y\"\.publish\[1\]: 'k8s io' is not a namespace pattern"),
    ({"identities": {"a": {"subscribe": {"allow": ["x"], "deny": [3]}}}},
     r"^identities\.a\.subscribe\.deny\[0\]: 3 is not a namespace pattern"),
    ({"identities": {"a": {"subscribe": {"alow": ["x"]}}}},
     r"^identities\.a\.subscribe\.alow: unknown key \(expected allow, deny\)$"),
    ({"identities": {"": {}}}, r"^identities\.\"\": an identity must be"),
    ({"identities": {"a": ["x"]}}, r"^identities\.a: must be a table of permissions$"),
    ({"limits": {"a": {"publish_rate": 0}}},
     r"^limits\.a\.publish_rate: must be a positive number"),
    ({"limits": {"a": {"max_streams": -1}}}, r"^limits\.a\.max_streams: must be an integer"),
    ({"limits": {"a": {"max_stream": 1}}}, r"^limits\.a\.max_stream: unknown limit"),
])
def test_errors_name_the_key(data: dict[str, object], error: str) -> None:
    with pytest.raises(PolicyError, match=error):
        parse_policy(data)


def test_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[identities.a]\npublish = ["x" "y"]\n')
    with pytest.raises(PolicyError, match=r"not valid TOML: .*line 2"):
        load_policy(path)
