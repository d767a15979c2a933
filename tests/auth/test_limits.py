"""Limits per identity: each identity has its own counters, refusals name the limit and
the identity, and counters of idle identities are forgotten."""

from __future__ import annotations

import pytest

from broadcaster._auth import IdentityLimiter, IdentityLimits, LimitExceeded, LimitTable


def limiter(table: dict[str, IdentityLimits]) -> tuple[IdentityLimiter, list[float]]:
    now = [0.0]
    return IdentityLimiter(lambda: LimitTable(table), lambda: now[0]), now


def test_one_identity_at_its_rate_leaves_another_its_own() -> None:
    lim, now = limiter({"*": IdentityLimits(publish_rate=10, publish_burst=5)})
    for _ in range(5):
        lim.take_publish("noisy", 1)
    with pytest.raises(LimitExceeded, match=r"^limits\.publish_rate: identity 'noisy': "
                                            r"publish rate of 10 events/s \(burst 5\) "
                                            r"exhausted; retry in 0\.1 s$") as info:
        lim.take_publish("noisy", 1)
    assert info.value.retry_after == pytest.approx(0.1)
    lim.take_publish("quiet", 5)  # untouched by the other's use
    now[0] = 0.3  # 3 events' worth refilled
    lim.take_publish("noisy", 3)
    with pytest.raises(LimitExceeded):
        lim.take_publish("noisy", 1)
    assert lim.rejected == {"publish_rate": 2}


def test_batches_are_taken_all_or_none_and_refunded() -> None:
    lim, _ = limiter({"*": IdentityLimits(publish_rate=100, publish_burst=10)})
    with pytest.raises(LimitExceeded, match=r"a batch of 11 events exceeds the publish burst "
                                            r"of 10"):
        lim.take_publish("a", 11)
    lim.take_publish("a", 8)
    with pytest.raises(LimitExceeded):
        lim.take_publish("a", 3)  # only 2 left: nothing is taken
    lim.take_publish("a", 2)
    lim.refund_publish("a", 2)  # e.g. the hub refused the batch
    lim.take_publish("a", 2)


def test_an_identitys_own_limits_override_the_default() -> None:
    lim, _ = limiter({"*": IdentityLimits(publish_rate=1, publish_burst=1),
                      "shim": IdentityLimits(publish_rate=1000)})
    lim.take_publish("shim", 1000)  # burst defaults to one second's worth
    with pytest.raises(LimitExceeded):
        lim.take_publish("other", 2)


def test_streams_and_subscriptions() -> None:
    lim, _ = limiter({"*": IdentityLimits(max_streams=2, max_subscriptions=1)})
    lim.open_stream("a")
    lim.open_stream("a")
    with pytest.raises(LimitExceeded, match=r"^limits\.max_streams: identity 'a': has 2 "
                                            r"streams open, its limit"):
        lim.open_stream("a")
    lim.open_stream("b")
    lim.close_stream("a")
    lim.open_stream("a")
    lim.add_subscription("a")
    with pytest.raises(LimitExceeded, match=r"^limits\.max_subscriptions: identity 'a': has 1 "
                                            r"subscriptions open"):
        lim.add_subscription("a")
    lim.remove_subscription("a")
    lim.add_subscription("a")
    assert lim.usage("a") == (2, 1)


def test_new_namespaces_per_minute() -> None:
    lim, now = limiter({"*": IdentityLimits(new_namespaces_per_minute=2)})
    for name in ("n1", "n2"):
        lim.check_new_namespace("a", name)
        lim.created_namespace("a")
    with pytest.raises(LimitExceeded, match=r"^limits\.new_namespaces_per_minute: identity "
                                            r"'a': may create 2 namespaces per minute and "
                                            r"namespace 'n3' would be one more; retry in 30 s"):
        lim.check_new_namespace("a", "n3")
    lim.check_new_namespace("b", "n3")
    now[0] = 30.0
    lim.check_new_namespace("a", "n3")


def test_idle_identities_are_forgotten() -> None:
    lim, now = limiter({"*": IdentityLimits(publish_rate=10, max_streams=5)})
    for i in range(100):
        lim.take_publish(f"id{i}", 1)
    lim.open_stream("holder")
    assert lim.tracked == 101
    lim.prune()
    assert lim.tracked == 101  # buckets not full yet
    now[0] = 1.0
    lim.prune()
    assert lim.tracked == 1  # only the one holding a stream
    lim.close_stream("holder")
    assert lim.tracked == 0


def test_no_limits_means_no_counters() -> None:
    lim, _ = limiter({})
    for _ in range(1000):
        lim.take_publish("a", 1000)
    assert lim.tracked == 0
