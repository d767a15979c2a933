"""The real ``ctr events`` and ``containerd publish`` over the unix socket with security
on: the socket admits its owner (mode 0600), who is the identity ``local``, and the
access policy applies to what ``ctr`` sees and ``containerd publish`` may do."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from broadcaster._auth import SecurityConfig
from broadcaster.containerd.events import task_pb2

from .harness import binary, containerd_server, ctr_events, run, socket_path

pytestmark = [pytest.mark.anyio, pytest.mark.interop,
              pytest.mark.usefixtures("shared_event_loop")]

EXIT = any_pb2.Any(type_url="containerd.events.TaskExit", value=task_pb2.TaskExit(
    container_id="c1", id="c1", pid=42, exit_status=137).SerializeToString())


async def shim_publish(sock: str, namespace: str) -> tuple[int, bytes]:
    done = await run(binary("containerd"), "--address", sock, "publish", "--namespace",
                     namespace, "--topic", "/tasks/exit", stdin=EXIT.SerializeToString())
    return done.returncode, done.stderr


async def test_ctr_and_containerd_publish_work_for_a_peer_the_socket_admits(
        tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[identities.local]\nadmin = ["*"]\n'
                      '[identities.someone-else]\nsubscribe = ["k8s.io"]\n')
    sock = socket_path(tmp_path)
    async with containerd_server(sock, security=SecurityConfig(policy_file=str(policy))) as hub:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
            assert await shim_publish(sock, "k8s.io") == (0, b"")
            assert " k8s.io /tasks/exit " in await ctr.line()


async def test_the_policy_decides_what_local_peers_see_and_publish(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[identities.local]\nsubscribe = ["k8s.io"]\n'
                      'publish = ["k8s.io", "moby"]\ncreate = ["k8s.io", "moby"]\n')
    sock = socket_path(tmp_path)
    async with containerd_server(sock, security=SecurityConfig(policy_file=str(policy))) as hub:
        async with ctr_events(hub, sock, tmp_path=tmp_path) as ctr:
            assert await shim_publish(sock, "moby") == (0, b"")  # not readable: not shown
            assert await shim_publish(sock, "k8s.io") == (0, b"")
            assert " k8s.io /tasks/exit " in await ctr.line()
            code, stderr = await shim_publish(sock, "other")
            assert code != 0  # containerd 1.6's errdefs shows PERMISSION_DENIED as "unknown"
            assert stderr.startswith(b"containerd: containerd-namespace: identity 'local' "
                                     b"lacks permission 'publish' on namespace 'other'")
        assert hub.has_namespace("moby") and not hub.has_namespace("other")
