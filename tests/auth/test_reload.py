"""Reloading a file: a change is seen (rename over it, or rewrite in place), a bad file
is refused and the value in force stays, and the refusal is logged once per version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broadcaster._auth import PolicyError, Reloadable, load_policy
from broadcaster._auth._access import Permission, decide


def write(path: Path, text: str, mtime_ns: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.utime(tmp, ns=(mtime_ns, mtime_ns))
    tmp.replace(path)  # what editors and configuration managers do


def test_changes_are_seen_and_bad_files_refused(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "policy.toml"
    write(path, '[identities.a]\npublish = ["x"]\n', 1_000_000_000)
    policy = Reloadable(str(path), load_policy, "policy")
    seen = []
    policy.on_reload(seen.append)
    assert not policy.changed() and not policy.check()

    write(path, '[identities.a]\npublish = ["y"]\n', 2_000_000_000)
    assert policy.check()
    assert decide(policy.value.access, "a", Permission.PUBLISH, "y").allowed
    assert seen == [policy.value]

    good = policy.value
    with caplog.at_level("ERROR", logger="broadcaster.security"):
        write(path, '[identities.a]\npublish = ["bad name"]\n', 3_000_000_000)
        assert not policy.check()
        assert not policy.check()  # the same bad version: not retried, not logged again
        assert not policy.reload()  # asked (SIGHUP): tried and logged again
    assert policy.value is good and policy.failures == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "policy file refused, the previous one stays in force" in messages[0]
    assert "identities.a.publish[0]: 'bad name' is not a namespace pattern" in messages[0]

    # rewritten in place with the same size: the modification time tells
    path.write_text('[identities.a]\npublish = ["z"]\n')
    os.utime(path, ns=(4_000_000_000, 4_000_000_000))
    assert policy.check()
    assert decide(policy.value.access, "a", Permission.PUBLISH, "z").allowed


def test_a_missing_file_is_refused_and_the_old_value_kept(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("")
    policy = Reloadable(str(path), load_policy, "policy")
    path.unlink()
    assert not policy.check() and policy.failures == 1
    assert policy.value.rules == 0


def test_a_bad_file_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[nope]\n")
    with pytest.raises(PolicyError, match=r"^nope: unknown section"):
        Reloadable(str(path), load_policy, "policy")
