"""deploy/prometheus: the rules pass `promtool check rules`, the example configuration
`promtool check config`, and every alert is exercised by `promtool test rules` on series
written here: each fires when it should, with the labels and text an operator reads, and
stays quiet in a near miss.

promtool comes with Debian's ``prometheus`` package (.ci/run installs it); without it
these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from .._loops import ASYNCIO
from ._files import DEPLOY, run

pytestmark = pytest.mark.anyio

RULES = DEPLOY / "prometheus" / "broadcaster-alerts.yml"
CONFIG = DEPLOY / "prometheus" / "prometheus.yml"


@pytest.fixture(scope="module")
def anyio_backend() -> object:
    return ASYNCIO


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool is not installed (.ci/run installs Debian's prometheus)"
    return path


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", RULES.read_text(), re.MULTILINE)


A = 'job="broadcaster",instance="a:9464"'
B = 'job="broadcaster",instance="b:9464"'
LABELS_A = {"job": "broadcaster", "instance": "a:9464"}


def runbook(alert: str) -> str:
    return f"docs/operations.md#{alert.lower()}"


PUBLISH_ERROR = ({"severity": "warning", "method": "/broadcaster.v1.Broadcaster/Publish",
                  "code": "RESOURCE_EXHAUSTED", **LABELS_A}, {
    "summary": "publishes to broadcaster a:9464 fail with RESOURCE_EXHAUSTED",
    "description": "/broadcaster.v1.Broadcaster/Publish calls have been failing with "
                   "RESOURCE_EXHAUSTED for 5 minutes (0.5 per second now): those events were "
                   "not published.",
})

# One promtool test group per alert: series sampled every minute ("0+60x20": 0, 60, ...,
# 21 samples), then the alerts expected at chosen times, as (labels, annotations) without
# the alert's name and runbook. An empty list: must not fire.
CASES: dict[str, dict[str, Any]] = {
    "BroadcasterDown": {
        "series": [{"series": f"up{{{A}}}", "values": "1 1 0 0 0 0 0"},
                   {"series": f"up{{{B}}}", "values": "1x6"}],
        "alerts": [
            (2, []),  # down for less than a minute: pending
            (4, [({"severity": "critical", **LABELS_A}, {
                "summary": "broadcaster a:9464 is down",
                "description": "Prometheus has not been able to scrape a:9464 for 1 minute: "
                               "publishers and subscribers cannot reach the server.",
            })]),
        ],
    },
    "BroadcasterRestarting": {
        "series": [
            {"series": f"process_start_time_seconds{{{A}}}", "values": "100 160 220 280x10"},
            {"series": f"process_start_time_seconds{{{B}}}", "values": "100 160 220x11"},
        ],
        "alerts": [
            (5, [({"severity": "warning", **LABELS_A}, {
                "summary": "broadcaster a:9464 restarted 3 times in 30 minutes",
                "description": "Every restart loses the in-memory event log: subscribers "
                               "resume with ResyncNotice(epoch_changed) and re-list their "
                               "state.",
            })]),
            (40, []),  # the restarts are older than 30 minutes
        ],
    },
    "BroadcasterEventsDropped": {
        "series": [
            # 1 drop per second, on and on; and a burst that stopped
            {"series": f'broadcaster_events_dropped_total{{{A},namespace="k8s.io",'
                       'reason="drop_oldest"}', "values": "0+60x30"},
            {"series": f'broadcaster_events_dropped_total{{{A},namespace="moby",'
                       'reason="drop_newest"}', "values": "0+600x3 1800x27"},
        ],
        "alerts": [
            (5, []),  # dropping for less than 10 minutes
            (15, [({"severity": "warning", "namespace": "k8s.io", "reason": "drop_oldest",
                   **LABELS_A}, {
                "summary": "broadcaster a:9464 drops events in namespace k8s.io (drop_oldest)",
                "description": "Subscribers of k8s.io have been losing events for 10 minutes, "
                               "1 per second now, reason drop_oldest. Each loss is reported "
                               "to its subscriber as a DropNotice.",
            })]),
        ],
    },
    "BroadcasterSubscribersEvicted": {
        "series": [
            {"series": f'broadcaster_subscribers_evicted_total{{{A},namespace="k8s.io",'
                       'reason="heartbeat_timeout"}', "values": "0 0 0 1x30"},
            {"series": f'broadcaster_subscribers_evicted_total{{{B},namespace="k8s.io",'
                       'reason="slow_consumer"}', "values": "0x30"},
        ],
        "alerts": [
            (5, [({"severity": "warning", "namespace": "k8s.io", "reason": "heartbeat_timeout",
                  **LABELS_A}, {
                "summary": "broadcaster a:9464 evicted subscribers of namespace k8s.io "
                           "(heartbeat_timeout)",
                "description": "Subscriptions covering k8s.io were ended by the server in "
                               "the last 10 minutes, reason heartbeat_timeout.",
            })]),
            (20, []),  # nothing evicted in the last 10 minutes
        ],
    },
    "BroadcasterLagGrowing": {
        "series": [
            {"series": f'broadcaster_subscriber_max_lag_events{{{A},namespace="replay"}}',
             "values": "0+200x40"},
            # stuck at a drop policy's bound (the drops alert covers it), and growing slowly
            {"series": f'broadcaster_subscriber_max_lag_events{{{A},namespace="pinned"}}',
             "values": "1024x40"},
            {"series": f'broadcaster_subscriber_max_lag_events{{{A},namespace="small"}}',
             "values": "0+10x40"},
        ],
        "alerts": [
            (10, []),  # above 1,000 and growing, but not for 10 minutes yet
            (20, [({"severity": "warning", "namespace": "replay", **LABELS_A}, {
                "summary": "a subscriber of replay on a:9464 keeps falling behind",
                "description": "The largest lag in namespace replay has grown for 10 minutes "
                               "and is 4000 events: a subscriber reads slower than events "
                               "are published.",
            })]),
        ],
    },
    "BroadcasterPublishErrors": {
        "series": [
            {"series": f'broadcaster_grpc_requests_total{{{A},method="/broadcaster.v1.'
                       'Broadcaster/Publish",code="RESOURCE_EXHAUSTED"}', "values": "0+30x20"},
            {"series": f'broadcaster_grpc_requests_total{{{A},method="/containerd.services.'
                       'events.v1.Events/Forward",code="UNAVAILABLE"}', "values": "0 0 0 0+6x20"},
            # not publish errors: successes, cancellations, a rejected Subscribe
            {"series": f'broadcaster_grpc_requests_total{{{A},method="/broadcaster.v1.'
                       'Broadcaster/Publish",code="OK"}', "values": "0+600x20"},
            {"series": f'broadcaster_grpc_requests_total{{{A},method="/broadcaster.v1.'
                       'Broadcaster/PublishStream",code="CANCELLED"}', "values": "0+6x20"},
            {"series": f'broadcaster_grpc_requests_total{{{A},method="/broadcaster.v1.'
                       'Broadcaster/Subscribe",code="INVALID_ARGUMENT"}', "values": "0+6x20"},
        ],
        "alerts": [
            (4, []),
            (7, [PUBLISH_ERROR]),
            (10, [PUBLISH_ERROR, ({"severity": "warning", "code": "UNAVAILABLE",
                                  "method": "/containerd.services.events.v1.Events/Forward",
                                  **LABELS_A}, {
                "summary": "publishes to broadcaster a:9464 fail with UNAVAILABLE",
                "description": "/containerd.services.events.v1.Events/Forward calls have been "
                               "failing with UNAVAILABLE for 5 minutes (0.1 per second now): "
                               "those events were not published.",
            })]),
        ],
    },
    "BroadcasterRequestsRejected": {
        "series": [
            {"series": f'broadcaster_grpc_rejected_total{{{A},reason="invalid_argument"}}',
             "values": "0+30x20"},
            {"series": f'broadcaster_grpc_rejected_total{{{B},reason="not_found"}}',
             "values": "0+30x3 90x17"},
        ],
        "alerts": [
            (5, []),
            (15, [({"severity": "warning", "reason": "invalid_argument", **LABELS_A}, {
                "summary": "broadcaster a:9464 rejects requests (invalid_argument)",
                "description": "Requests, PublishStream batches or subscription Adds have "
                               "been rejected with invalid_argument for 10 minutes (0.5 per "
                               "second now).",
            })]),
        ],
    },
}


def promtool_group(alert: str, case: dict[str, Any]) -> dict[str, Any]:
    tests = [{"eval_time": f"{minutes}m", "alertname": alert,
              "exp_alerts": [{"exp_labels": labels,
                              "exp_annotations": {**text, "runbook": runbook(alert)}}
                             for labels, text in alerts]}
             for minutes, alerts in case["alerts"]]
    return {"interval": "1m", "input_series": case["series"], "alert_rule_test": tests}


async def test_rules_and_example_configuration_check() -> None:
    code, out, err = await run([promtool(), "check", "rules", str(RULES)])
    assert code == 0 and f"SUCCESS: {len(alert_names())} rules found" in out, out + err
    code, out, err = await run([promtool(), "check", "config", str(CONFIG)])
    assert code == 0, out + err


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    assert sorted(CASES) == sorted(alert_names())
    for alert, case in CASES.items():
        outcomes = [bool(want) for _, want in case["alerts"]]
        assert True in outcomes and False in outcomes, alert


async def test_alerts_fire_on_the_series_written_here(tmp_path: Path) -> None:
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [promtool_group(alert, case) for alert, case in CASES.items()]}
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(spec, indent=2))  # JSON is YAML
    code, out, err = await run([promtool(), "test", "rules", str(path)])
    assert code == 0, out + err


async def test_promtool_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The check above can fail: the same series with an alert that should not be there."""
    group = promtool_group("BroadcasterDown", CASES["BroadcasterDown"])
    group["alert_rule_test"][0]["exp_alerts"] = group["alert_rule_test"][1]["exp_alerts"]
    path = tmp_path / "wrong_test.yml"
    path.write_text(json.dumps({"rule_files": [str(RULES)], "tests": [group]}))
    code, out, err = await run([promtool(), "test", "rules", str(path)])
    assert code == 1 and "FAILED" in out + err
