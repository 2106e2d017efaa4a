"""The process kubelet's pod lifecycle against an in-memory API (real processes)."""

from __future__ import annotations

import base64
import copy
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stack.kubelet import images, runtime
from stack.kubelet.kubelet import Kubelet, stop_all_pods
from stack.kubelet.logs import read
from stack.kubelet.logserver import KubeletHTTPServer, LogSource, tls_context
from stack.pki import ensure_pki

Obj = dict[str, Any]
PY = "python:3.12"


class FakeApi:
    host = "https://127.0.0.1:16443"

    def __init__(self) -> None:
        self.statuses: dict[str, list[Obj]] = {}
        self.deleted: list[tuple[str, str, str]] = []
        self.configmaps: dict[tuple[str, str], Obj] = {}
        self.secrets: dict[tuple[str, str], Obj] = {}
        self.events: list[Obj] = []
        self.lock = threading.Lock()

    def patch_pod_status(self, ns: str, name: str, patch: Obj) -> Obj:
        with self.lock:
            self.statuses.setdefault(f"{ns}/{name}", []).append(copy.deepcopy(patch["status"]))
        return {"status": patch["status"]}

    def delete_pod(self, ns: str, name: str, uid: str) -> None:
        self.deleted.append((ns, name, uid))

    def configmap(self, ns: str, name: str) -> Obj | None:
        return self.configmaps.get((ns, name))

    def secret(self, ns: str, name: str) -> Obj | None:
        return self.secrets.get((ns, name))

    def service_account_token(self, ns: str, sa: str, spec: Obj) -> str:
        return f"token-for-{ns}-{sa}"

    def post_event(self, ns: str, event: Obj) -> None:
        self.events.append(event)

    def last(self, name: str, ns: str = "ns") -> Obj:
        with self.lock:
            return self.statuses.get(f"{ns}/{name}", [{}])[-1]


def make_kubelet(api: FakeApi, state: Path) -> Kubelet:
    return Kubelet(api, "local", 10250, state, images=images.load())  # type: ignore[arg-type]


def pod(name: str, containers: list[Obj], **spec: Any) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": str(uuid.uuid4()),
                     "labels": {"app": "x"}},
        "spec": {"nodeName": "local", "restartPolicy": "Never", "containers": containers, **spec},
        "status": {"phase": "Pending"},
    }  # fmt: skip


def py(name: str, code: str, **extra: Any) -> Obj:
    return {"name": name, "image": PY, "command": ["python", "-c", code], **extra}


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def logged(k: Kubelet, name: str, container: str = "main") -> bytes:
    """What the container has written so far (b"" before its log exists)."""
    source = k.locate("ns", name, container, False)
    return b"" if isinstance(source, str) else read(source.path)[0]


def phase_is(api: FakeApi, name: str, *phases: str) -> Callable[[], bool]:
    return lambda: api.last(name).get("phase") in phases


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[FakeApi, Kubelet]]:
    api = FakeApi()
    k = make_kubelet(api, tmp_path / "state")
    yield api, k
    k.stopping.set()
    stop_all_pods(tmp_path / "state")


def test_pod_succeeds_with_termination_message_and_logs(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    code = "print('hello from pod'); open('/dev/termination-log','w').write('{\"rows\": 3}')"
    p = pod("ok", [py("main", code)])
    k.sync(p)
    wait_for(phase_is(api, "ok", "Succeeded", "Failed"))
    status = api.last("ok")
    assert status["phase"] == "Succeeded"
    (cs,) = status["containerStatuses"]
    term = cs["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert term["message"] == '{"rows": 3}'
    assert cs["containerID"].startswith("process://")
    running = [s for s in api.statuses["ns/ok"] if s["phase"] == "Running"]
    assert running and running[0]["containerStatuses"][0]["state"]["running"]["startedAt"]
    source = k.locate("ns", "ok", "main", False)
    assert not isinstance(source, str)
    assert read(source.path)[0] == b"hello from pod\n"


def test_failure_and_fallback_to_logs(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    code = "import sys; print('boom happened'); sys.exit(3)"
    k.sync(pod("bad", [py("main", code, terminationMessagePolicy="FallbackToLogsOnError")]))
    wait_for(phase_is(api, "bad", "Succeeded", "Failed"))
    term = api.last("bad")["containerStatuses"][0]["state"]["terminated"]
    assert api.last("bad")["phase"] == "Failed"
    assert term["exitCode"] == 3 and term["reason"] == "Error"
    assert term["message"] == "boom happened\n"


def test_volumes_env_and_init_containers(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    api.configmaps[("ns", "cfg")] = {"data": {"greeting": "hi", "file.txt": "from cm"}}
    api.secrets[("ns", "sec")] = {"data": {"password": base64.b64encode(b"s3cret").decode()}}
    mounts = [{"name": "work", "mountPath": "/work"}, {"name": "cm", "mountPath": "/etc/cfg"}]
    init = py("prep", "open('/work/in.txt','w').write('seed')", volumeMounts=mounts)
    main = py(
        "main",
        "import os; print(open('/work/in.txt').read(), open('/etc/cfg/file.txt').read(),"
        " os.environ['POD'], os.environ['GREETING'], os.environ['PW'], os.environ['OUT'],"
        " os.environ['APP'], os.getcwd().endswith('/work'))",
        volumeMounts=mounts,
        workingDir="/work",
        env=[
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING",
             "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "OUT", "value": "/work/out"},
        ],
    )  # fmt: skip
    volumes = [{"name": "work", "emptyDir": {}}, {"name": "cm", "configMap": {"name": "cfg"}}]
    k.sync(pod("vol", [main], initContainers=[init], volumes=volumes))
    wait_for(phase_is(api, "vol", "Succeeded", "Failed"))
    assert api.last("vol")["phase"] == "Succeeded", api.last("vol")
    assert api.last("vol")["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    source = k.locate("ns", "vol", "main", False)
    assert not isinstance(source, str)
    line = read(source.path)[0].decode()
    assert line.startswith("seed from cm vol hi s3cret ")
    words = line.split()
    assert words[6].endswith("/volumes/work/out"), words
    assert words[7:] == ["x", "True"]


def test_unknown_image_fails_the_pod(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    k.sync(pod("img", [{"name": "c", "image": "nginx:1.27", "command": ["nginx"]}]))
    wait_for(phase_is(api, "img", "Failed"))
    status = api.last("img")
    assert status["reason"] == "ImageNotMapped"
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "ImageNotMapped"
    assert "nginx:1.27" in term["message"] and "images.yaml" in term["message"]


def test_args_without_entrypoint_fail_naming_the_pod(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    k.sync(pod("args", [{"name": "c", "image": "lineage-hub:dev", "args": ["run"]}]))
    wait_for(phase_is(api, "args", "Failed"))
    assert "pod ns/args" in api.last("args")["message"]


def test_on_failure_restarts(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    code = (
        "import os, sys\n"
        "if not os.path.exists('/scratch/once'):\n"
        "    open('/scratch/once', 'w').close(); sys.exit(1)\n"
        "print('second run')"
    )
    c = py("main", code, volumeMounts=[{"name": "s", "mountPath": "/scratch"}])
    p = pod("retry", [c], restartPolicy="OnFailure", volumes=[{"name": "s", "emptyDir": {}}])
    k.sync(p)
    wait_for(phase_is(api, "retry", "Succeeded", "Failed"))
    cs = api.last("retry")["containerStatuses"][0]
    assert api.last("retry")["phase"] == "Succeeded"
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    prev = k.locate("ns", "retry", "main", True)
    assert not isinstance(prev, str)


def test_graceful_deletion(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    p = pod("del", [py("main", "import time; print('up', flush=True); time.sleep(60)")])
    k.sync(p)
    wait_for(phase_is(api, "del", "Running"))
    # Running is reported once the shim is launched; wait for the command itself, so the
    # SIGTERM meets the command and not a shim still starting up.
    wait_for(lambda: logged(k, "del") == b"up\n")
    deleting = copy.deepcopy(p)
    deleting["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    deleting["metadata"]["deletionGracePeriodSeconds"] = 5
    k.sync(deleting)
    wait_for(phase_is(api, "del", "Failed", "Succeeded"))
    # SIGTERM ended it: 128 + 15, written by the shim. A SIGKILL after the grace period
    # takes the shim down too, which leaves 137 and "stopped by the kubelet".
    assert api.last("del")["phase"] == "Failed"
    term = api.last("del")["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (143, "Error"), term
    assert term.get("message", "") != "stopped by the kubelet"
    wait_for(lambda: any(e["reason"] == "Killing" for e in api.events))
    (killing,) = [e for e in api.events if e["reason"] == "Killing"]
    assert killing["involvedObject"]["fieldPath"] == "spec.containers{main}"
    wait_for(lambda: bool(api.deleted))
    assert api.deleted == [("ns", "del", p["metadata"]["uid"])]


def test_active_deadline(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    k.sync(pod("dl", [py("main", "import time; time.sleep(60)")], activeDeadlineSeconds=1,
               terminationGracePeriodSeconds=1))  # fmt: skip
    wait_for(phase_is(api, "dl", "Failed"))
    assert api.last("dl")["reason"] == "DeadlineExceeded"


def wait_for_file(path: Path, then: str) -> str:
    """Python code for a container that waits until `path` exists, then prints `then`."""
    return (
        "import os, time\n"
        f"while not os.path.exists({str(path)!r}): time.sleep(0.02)\n"
        f"print({then!r})"
    )


def test_restart_adopts_running_and_finished_containers(tmp_path: Path) -> None:
    api = FakeApi()
    state = tmp_path / "state"
    release = tmp_path / "release"
    kubelets = [make_kubelet(api, state)]
    try:
        first = kubelets[0]
        p = pod("adopt", [py("main", wait_for_file(release, "done"))])
        first.sync(p)
        wait_for(phase_is(api, "adopt", "Running"))
        first.stopping.set()  # the kubelet "dies": its worker stops, the process goes on
        wait_for(lambda: not first.workers)  # the worker thread has returned
        pid = api.last("adopt")["containerStatuses"][0]["containerID"]
        (attempt,) = runtime.attempts(first.pod_dir(p) / "containers" / "main")
        assert attempt.running()
        # A new kubelet takes the running container over, and sees it end.
        second = make_kubelet(api, state)
        kubelets.append(second)
        api.statuses.clear()
        second.sync(p)
        wait_for(phase_is(api, "adopt", "Running"))
        assert api.last("adopt")["containerStatuses"][0]["containerID"] == pid
        release.touch()
        wait_for(phase_is(api, "adopt", "Succeeded", "Failed"))
        cs = api.last("adopt")["containerStatuses"][0]
        assert api.last("adopt")["phase"] == "Succeeded"
        assert cs["containerID"] == pid and cs["restartCount"] == 0
        second.stopping.set()
        wait_for(lambda: not second.workers)
        # And once more: a kubelet that finds the pod finished (its verdict on disk)
        # reports that verdict and the same container, and runs nothing again.
        third = make_kubelet(api, state)
        kubelets.append(third)
        api.statuses.clear()
        third.sync(p)
        wait_for(phase_is(api, "adopt", "Succeeded", "Failed"))
        status = api.last("adopt")
        assert status["phase"] == "Succeeded"
        (cs,) = status["containerStatuses"]
        assert cs["containerID"] == pid and cs["restartCount"] == 0
        assert cs["state"]["terminated"]["exitCode"] == 0
        runs = runtime.attempts(third.pod_dir(p) / "containers" / "main")
        assert [a.dir.name for a in runs] == ["0"]
        assert logged(third, "adopt") == b"done\n"
    finally:
        release.touch()
        for k in kubelets:
            k.stopping.set()
        stop_all_pods(state)


def test_restart_adopts_a_container_that_ended_while_no_kubelet_ran(tmp_path: Path) -> None:
    api = FakeApi()
    state = tmp_path / "state"
    release = tmp_path / "release"
    first = make_kubelet(api, state)
    second: Kubelet | None = None
    try:
        p = pod("alone", [py("main", wait_for_file(release, "finished alone"))])
        first.sync(p)
        wait_for(phase_is(api, "alone", "Running"))
        pid = api.last("alone")["containerStatuses"][0]["containerID"]
        first.stopping.set()
        wait_for(lambda: not first.workers)
        release.touch()  # the container ends now, with no kubelet watching it
        (attempt,) = runtime.attempts(first.pod_dir(p) / "containers" / "main")
        wait_for((attempt.dir / "exit.json").exists)
        assert api.last("alone")["phase"] == "Running"  # nobody has reported the end yet
        second = make_kubelet(api, state)
        second.sync(p)
        wait_for(phase_is(api, "alone", "Succeeded", "Failed"))
        status = api.last("alone")
        assert status["phase"] == "Succeeded"
        (cs,) = status["containerStatuses"]
        assert cs["containerID"] == pid and cs["restartCount"] == 0
        term = cs["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (0, "Completed")
        assert len(runtime.attempts(second.pod_dir(p) / "containers" / "main")) == 1
        assert logged(second, "alone") == b"finished alone\n"
    finally:
        release.touch()
        first.stopping.set()
        if second is not None:
            second.stopping.set()
        stop_all_pods(state)


def test_python_is_the_checkout_interpreter(env: tuple[FakeApi, Kubelet]) -> None:
    api, k = env
    k.sync(pod("which", [py("main", "import sys; print(sys.prefix)")]))
    wait_for(phase_is(api, "which", "Succeeded", "Failed"))
    source = k.locate("ns", "which", "main", False)
    assert not isinstance(source, str)
    assert read(source.path)[0].decode().strip() == sys.prefix


def test_log_server_over_tls(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ensure_pki(pki, "https://127.0.0.1:1")
    log = tmp_path / "log"
    log.write_bytes(b"2025-01-01T00:00:00Z stdout F one\n2025-01-01T00:00:01Z stderr F two\n")
    active = {"on": True}

    def locate(ns: str, pod: str, container: str, previous: bool) -> LogSource | str:
        if (ns, pod, container, previous) != ("ns", "p", "c", False):
            return f"container {container!r} not found"
        return LogSource(log, lambda: active["on"])

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = KubeletHTTPServer(
        port, locate, tls_context(pki / "kubelet.crt", pki / "kubelet.key", pki / "ca.crt")
    )
    server.start()
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key")
    base = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, verify=ctx, timeout=10) as client:
            assert client.get("/healthz").text == "ok"
            assert client.get("/containerLogs/ns/p/c").text == "one\ntwo\n"
            assert client.get("/containerLogs/ns/p/c?tailLines=1").text == "two\n"
            stamped = client.get("/containerLogs/ns/p/c?timestamps=true&limitBytes=24").text
            assert stamped == "2025-01-01T00:00:00Z one"
            assert client.get("/containerLogs/ns/p/c?previous=true").status_code == 404

            # Follow: what is there, then a line written while following, then the end of
            # the stream once the container is no longer active. Each step waits for the
            # previous one to arrive (a stalled stream fails on the client's read timeout).
            body = b""
            with client.stream("GET", "/containerLogs/ns/p/c?follow=true") as resp:
                chunks = resp.iter_bytes()
                while body != b"one\ntwo\n":
                    body += next(chunks)
                with log.open("ab") as f:
                    f.write(b"2025-01-01T00:00:02Z stdout F three\n")
                while body == b"one\ntwo\n":
                    body += next(chunks)
                assert body == b"one\ntwo\nthree\n"
                active["on"] = False
                assert list(chunks) == []  # the stream ends, with nothing more
        bare = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises((httpx.HTTPError, ssl.SSLError)):
            httpx.get(base + "/healthz", verify=bare, timeout=5)
    finally:
        server.shutdown()
