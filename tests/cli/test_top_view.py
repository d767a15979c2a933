"""`broadcaster top`'s figures and text, from Stats responses built in the test."""

from __future__ import annotations

from typing import Any

import pytest

from broadcaster._cli._top_render import (
    format_bytes,
    format_count,
    format_duration,
    format_rate,
    render,
    screen,
)
from broadcaster._cli._top_sample import SORT_KEYS, Sample, sorted_rows, take_sample
from broadcaster.v1 import broadcaster_pb2 as pb


def stats(uptime: float, epoch: str = "e1", **namespaces: dict[str, Any]) -> pb.StatsResponse:
    response = pb.StatsResponse(uptime_seconds=uptime, epoch=epoch, subscriptions=7, streams=3)
    for name, fields in namespaces.items():
        response.namespaces.add(namespace=name, **fields)
    return response


def row(sample: Sample, name: str) -> Any:
    return next(r for r in sample.namespaces if r.namespace == name)


def test_rates_are_per_second_of_server_uptime_between_two_readings() -> None:
    before = stats(10.0, a={"published": 100, "delivered": 300, "dropped": {"drop_oldest": 5}})
    after = stats(12.5, a={"published": 350, "delivered": 800,
                           "dropped": {"drop_oldest": 15, "retention": 10}})
    a = row(take_sample(after, before), "a")
    assert (a.publish_rate, a.delivery_rate, a.drop_rate) == (100.0, 200.0, 8.0)
    assert (a.published, a.delivered, a.dropped) == (350, 800, 25)
    assert take_sample(after, before).interval_seconds == 2.5


def test_no_rates_without_a_previous_reading_or_across_a_restart() -> None:
    current = stats(5.0, a={"published": 10})
    for previous in (None, stats(4.0, epoch="other", a={"published": 1}),
                     stats(9.0, a={"published": 1})):  # a smaller uptime: restarted
        sample = take_sample(current, previous)
        assert sample.interval_seconds is None
        assert row(sample, "a").publish_rate is None
        assert sample.total_rate("publish_rate") is None
        assert sample.total("published") == 10


def test_a_new_namespace_counts_from_zero_and_a_counter_going_back_has_no_rate() -> None:
    before = stats(1.0, a={"published": 50})
    after = stats(2.0, a={"published": 40}, b={"published": 30, "delivered": 60})
    sample = take_sample(after, before)
    assert row(sample, "a").publish_rate is None
    assert (row(sample, "b").publish_rate, row(sample, "b").delivery_rate) == (30.0, 60.0)
    assert sample.total_rate("publish_rate") == 30.0  # over the namespaces with a rate


def test_json_has_totals_and_every_namespace_by_name() -> None:
    before = stats(1.0, b={"published": 1}, a={"published": 1})
    after = stats(3.0, b={"published": 5, "subscribers": 2, "max_lag": 9,
                          "evicted": {"slow_consumer": 1, "heartbeat_timeout": 2}},
                  a={"published": 3, "dropped": {"drop_newest": 4}})
    data = take_sample(after, before).to_json()
    assert [n["namespace"] for n in data["namespaces"]] == ["a", "b"]
    assert data["totals"] == {"published": 8, "delivered": 0, "dropped": 4, "evicted": 3,
                              "publish_rate": 3.0, "delivery_rate": 0.0, "drop_rate": 2.0}
    b = data["namespaces"][1]
    assert (b["subscribers"], b["max_lag"], b["evicted"]) == (2, 9, 3)
    assert b["evicted_by_reason"] == {"heartbeat_timeout": 2, "slow_consumer": 1}
    assert (data["subscriptions"], data["streams"], data["epoch"]) == (7, 3, "e1")


def test_sort_orders_busiest_first_with_ties_by_name() -> None:
    before = stats(1.0, a={}, b={}, c={})
    after = stats(2.0, a={"published": 1, "subscribers": 5},
                  b={"published": 9, "max_lag": 3, "dropped": {"x": 1}},
                  c={"published": 9, "delivered": 4})
    sample = take_sample(after, before)
    order = {key: [r.namespace for r in sorted_rows(sample, key)] for key in SORT_KEYS}
    assert order == {"publish": ["b", "c", "a"], "deliver": ["c", "a", "b"],
                     "drops": ["b", "a", "c"], "subscribers": ["a", "b", "c"],
                     "lag": ["b", "a", "c"], "name": ["a", "b", "c"]}


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"), (0.0, "0"), (0.25, "0.2"), (7.46, "7.5"), (9.96, "10"), (512.4, "512"),
    (999.4, "999"), (999.6, "1k"), (12_345.0, "12.3k"), (2_149_477.0, "2.15M"),
])
def test_format_rate(value: float | None, text: str) -> None:
    assert format_rate(value) == text


def test_format_count_bytes_and_duration() -> None:
    assert [format_count(n) for n in (0, 99_999, 100_000, 4_560_000)] == [
        "0", "99999", "100k", "4.56M"]
    assert [format_bytes(n) for n in (512, 1536, 200 * 1024**2, 3 * 1024**4)] == [
        "512B", "1.5KiB", "200MiB", "3TiB"]
    assert [format_duration(s) for s in (42.9, 307, 7380, 273600)] == [
        "42s", "5m07s", "2h03m", "3d04h"]


def sample_with(count: int) -> Sample:
    names = {f"ns{i:02d}": {"published": 10 * i} for i in range(count)}
    return take_sample(stats(2.0, **names), stats(1.0, **{n: {} for n in names}))


def test_screen_fits_the_terminal_and_says_what_did_not_fit() -> None:
    view = screen(sample_with(30), address="unix:/s", sort="publish", error=None,
                  width=80, height=12)
    assert len(view.lines) == 12 and all(len(line) <= 80 for line in view.lines)
    assert view.lines[view.highlight or 0].startswith("NAMESPACE")
    assert view.lines[3] == "sorted by publish  (s: sort, q: quit)"
    assert view.lines[-1] == "... 25 more namespaces"
    shown = [line.split()[0] for line in view.lines[view.highlight + 1:-1]]  # type: ignore[operator]
    assert shown == ["ns29", "ns28", "ns27", "ns26", "ns25"]  # busiest first
    # a wide terminal shows every column, a narrow one leaves whole columns out
    wide = screen(sample_with(1), address="a", sort="name", error=None, width=200, height=40)
    narrow = screen(sample_with(1), address="a", sort="name", error=None, width=60, height=40)
    title = wide.lines[wide.highlight or 0]
    assert title.split() == ["NAMESPACE", "PUB/s", "DELIV/s", "DROP/s", "DROPPED", "SUBS",
                             "LAG", "EVICTED", "HEAD", "RETAINED", "BYTES"]
    assert narrow.lines[narrow.highlight or 0].split() == title.split()[:7]


def test_screen_keeps_the_figures_and_shows_the_error_when_a_reading_fails() -> None:
    view = screen(sample_with(2), address="a", sort="name", error="UNAVAILABLE: gone",
                  width=100, height=20)
    assert view.lines[3] == "! UNAVAILABLE: gone (retrying)"
    assert [line.split()[0] for line in view.lines[view.highlight or 0:]] == [
        "NAMESPACE", "ns00", "ns01"]
    first = screen(None, address="a", sort="name", error="UNAVAILABLE: gone",
                   width=100, height=20)
    assert first.lines == ["broadcaster top  a", "", "! UNAVAILABLE: gone (retrying)"]
    assert first.highlight is None


def test_long_namespace_names_are_cut_on_screen_but_not_in_once_output() -> None:
    name = "a" * 60
    sample = take_sample(stats(2.0, **{name: {"published": 4}}), stats(1.0, **{name: {}}))
    view = screen(sample, address="a", sort="name", error=None, width=100, height=20)
    assert view.lines[-1].startswith("a" * 17 + "~ ")  # what the numbers leave of 100
    view = screen(sample, address="a", sort="name", error=None, width=60, height=20)
    assert view.lines[-1].startswith("a" * 11 + "~ ")  # never less than 12
    text = render(sample, "a", "name").splitlines()
    assert text[-1].startswith(name + "  ") and text[-1].split()[1:4] == ["4.0", "0", "0"]
