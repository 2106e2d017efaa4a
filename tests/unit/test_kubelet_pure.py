"""Pure parts of the process kubelet: env, path mapping, images, status, logs."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from stack.kubelet import container, envvars, images, logs, status
from stack.kubelet.mounts import PathMap

POD: dict[str, Any] = {
    "metadata": {
        "name": "p1",
        "namespace": "ns1",
        "uid": "u-1",
        "labels": {"app": "hub", "tier": "x"},
        "annotations": {"note": "n"},
    },
    "spec": {"nodeName": "local", "serviceAccountName": "sa"},
    "status": {"podIP": "127.0.0.1"},
}


def lookups() -> tuple[envvars.Lookup, envvars.Lookup]:
    cms = {("ns1", "cfg"): {"A": "1", "B": "two", "bad key": "x"}}
    secs = {("ns1", "sec"): envvars.decode_secret({"PW": base64.b64encode(b"pw").decode()})}
    return (lambda ns, n: cms.get((ns, n))), (lambda ns, n: secs.get((ns, n)))


# -- env -------------------------------------------------------------------
def test_env_sources_and_precedence() -> None:
    cm, sec = lookups()
    c = {
        "name": "c",
        "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"secretRef": {"name": "sec"}, "prefix": "S_"},
        ],
        "env": [
            {"name": "A", "value": "override"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
            {"name": "NOTE",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "B2", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "B"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PW"}}},
            {"name": "REF", "value": "$(NAME)-$(B2)-$$(NAME)-$(MISSING)"},
        ],
    }  # fmt: skip
    env = envvars.resolve(POD, c, cm, sec)
    assert env["A"] == "override" and env["B"] == "two" and "bad key" not in env
    assert env["S_PW"] == "pw" and env["PW"] == "pw"
    assert (env["NAME"], env["NS"], env["UID"], env["APP"]) == ("p1", "ns1", "u-1", "hub")
    assert env["LABELS"] == 'app="hub"\ntier="x"'
    assert (env["NOTE"], env["NODE"], env["IP"], env["B2"]) == ("n", "local", "127.0.0.1", "two")
    assert env["REF"] == "p1-two-$(NAME)-$(MISSING)"


def test_env_optional_and_missing() -> None:
    cm, sec = lookups()
    optional = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
        "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                            "optional": True}}},
            {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "no",
                                                         "optional": True}}},
        ],
    }  # fmt: skip
    assert envvars.resolve(POD, optional, cm, sec) == {}
    ref = {"secretKeyRef": {"name": "sec", "key": "no"}}
    missing_key = {"name": "c", "env": [{"name": "Y", "valueFrom": ref}]}
    with pytest.raises(envvars.EnvError, match="couldn't find key no"):
        envvars.resolve(POD, missing_key, cm, sec)
    missing_cm = {"name": "c", "envFrom": [{"configMapRef": {"name": "nope"}}]}
    with pytest.raises(envvars.EnvError, match='configmap "nope" not found'):
        envvars.resolve(POD, missing_cm, cm, sec)


def test_resource_field_ref() -> None:
    c = {"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}
    cap = {"cpu": "2", "memory": "1Gi"}
    assert envvars.resource_value(c, {"resource": "limits.memory", "divisor": "1Mi"}, cap) == "64"
    assert envvars.resource_value(c, {"resource": "requests.cpu", "divisor": "1m"}, cap) == "250"
    assert envvars.resource_value(c, {"resource": "limits.cpu"}, cap) == "2"


# -- paths -------------------------------------------------------------------
def test_rewrite_mount_paths() -> None:
    pm = PathMap(root=Path("/r"))
    pm.add("/data", "/h/data")
    pm.add("/data/in/", "/h/input")
    pm.add("/dev/termination-log", "/h/tl")
    cases = {
        "/data": "/h/data",
        "/data/x.csv": "/h/data/x.csv",
        "/data/in/a": "/h/input/a",
        "--out=/data/o": "--out=/h/data/o",
        "file:///data/in/x.parquet": "file:///h/input/x.parquet",
        "open('/dev/termination-log','w')": "open('/h/tl','w')",
        "a:/data:b": "a:/h/data:b",
        "/database": "/database",
        "/data.bak": "/data.bak",
        "http://host/data/x": "http://host/data/x",
        "/x/data": "/x/data",
        "relative/data": "relative/data",
    }
    for given, want in cases.items():
        assert pm.rewrite(given) == want, given
    assert pm.host("/data/in/z") == "/h/input/z"
    assert pm.host("/app") == "/r/app"
    assert pm.host("/") == "/r"


def test_root_links(tmp_path: Path) -> None:
    pm = PathMap(root=tmp_path / "root")
    (tmp_path / "vol").mkdir()
    pm.add("/mnt/data", tmp_path / "vol")
    pm.add("/mnt/data/sub", tmp_path / "other")
    pm.build_root()
    pm.build_root()  # idempotent
    link = tmp_path / "root" / "mnt" / "data"
    assert link.is_symlink() and link.resolve() == (tmp_path / "vol").resolve()
    assert not (tmp_path / "vol" / "sub").exists()  # nested mounts are not linked into volumes
    with pytest.raises(ValueError, match="mounted at /"):
        pm.add("/", "/x")


def test_build_process(tmp_path: Path) -> None:
    rt = images.Runtime(name="py", path=("/venv/bin",), cmd=("python3",), env={"V": "1"})
    c = {
        "name": "main",
        "command": ["python", "/data/run.py"],
        "args": ["--in=/data/in.csv", "$(WHO)"],
        "workingDir": "/data/work",
        "volumeMounts": [{"name": "d", "mountPath": "/data"}],
        "terminationMessagePath": "/tmp/msg",
    }
    pm = container.path_map(c, {"d": tmp_path / "d"}, tmp_path / "root", tmp_path / "msg")
    own = {"WHO": "me", "OUT": "/data/out", "MSG": "/tmp/msg"}
    base = container.base_env(rt, POD, tmp_path / "root", "127.0.0.1", "16443")
    proc = container.build(POD, c, rt, pm, own_env=own, base=base)
    d = str(tmp_path / "d")
    assert proc.argv == ["python", f"{d}/run.py", f"--in={d}/in.csv", "me"]
    assert proc.env["OUT"] == f"{d}/out" and proc.env["MSG"] == str(tmp_path / "msg")
    assert proc.env["PATH"].startswith("/venv/bin:") and proc.env["V"] == "1"
    assert proc.env["KUBERNETES_SERVICE_PORT"] == "16443"
    assert proc.cwd == tmp_path / "d" / "work"


# -- images ------------------------------------------------------------------
def test_image_config() -> None:
    cfg = images.load()
    assert cfg.resolve("lineage-hub:dev").name == "project"
    assert cfg.resolve("ghcr.io/lineage-hub/lineage-hub:0.1.0").name == "project"
    py = cfg.resolve("python:3.12-slim")
    assert py.argv([], [], "w") == ["python3"]
    assert py.path[0].endswith("/.venv/bin")
    with pytest.raises(images.ImageNotMapped, match=r"redis:7.*images\.yaml"):
        cfg.resolve("redis:7")
    project = cfg.resolve("lineage-hub:dev")
    assert project.argv(["run"], ["--x"], "w") == ["run", "--x"]
    with pytest.raises(images.CommandError, match="pod ns/p container c"):
        project.argv([], ["--x"], "pod ns/p container c")
    entry = images.Runtime(name="e", entrypoint=("tini", "--"), cmd=("serve",))
    assert entry.argv([], [], "w") == ["tini", "--", "serve"]
    assert entry.argv([], ["x"], "w") == ["tini", "--", "x"]


# -- status ------------------------------------------------------------------
def cs(name: str, **kw: Any) -> status.ContainerState:
    return status.ContainerState(name=name, image="python:3", **kw)


def term(code: int) -> status.Terminated:
    return status.Terminated(code, status.exit_reason(code), "2025-01-01T00:00:00Z",
                             "2025-01-01T00:00:01Z")  # fmt: skip


def test_phase() -> None:
    running = cs("a")
    running.start(10, "2025-01-01T00:00:00Z")
    done, failed, waiting = cs("b", terminated=term(0)), cs("c", terminated=term(2)), cs("d")
    assert status.pod_phase("Never", [], [waiting]) == "Pending"
    assert status.pod_phase("Never", [], [running, done]) == "Running"
    assert status.pod_phase("Never", [], [done]) == "Succeeded"
    assert status.pod_phase("Never", [], [done, failed]) == "Failed"
    assert status.pod_phase("OnFailure", [], [done, failed]) == "Running"
    assert status.pod_phase("Always", [], [done]) == "Running"
    assert status.pod_phase("Never", [failed], [waiting]) == "Failed"
    assert status.pod_phase("OnFailure", [failed], [waiting]) == "Pending"
    assert status.pod_phase("Never", [done], [running]) == "Running"
    backoff = cs("e")
    backoff.finish(term(1))
    backoff.wait("CrashLoopBackOff")
    assert status.pod_phase("OnFailure", [], [backoff]) == "Running"


def test_status_patch_documents() -> None:
    a = cs("a")
    a.start(42, "2025-01-01T00:00:00Z")
    st = status.PodStatus(phase="Running", start_time="2025-01-01T00:00:00Z", sandbox=True,
                          main=[a])  # fmt: skip
    doc = st.patch()["status"]
    assert doc["podIP"] == doc["hostIP"] == "127.0.0.1"
    c = doc["containerStatuses"][0]
    assert c["containerID"] == "process://42" and c["ready"] and c["started"]
    assert c["state"] == {"waiting": None, "running": {"startedAt": "2025-01-01T00:00:00Z"},
                          "terminated": None}  # fmt: skip
    conds = {x["type"]: x for x in doc["conditions"]}
    assert {k: v["status"] for k, v in conds.items()} == {
        "PodReadyToStartContainers": "True", "Initialized": "True",
        "ContainersReady": "True", "Ready": "True",
    }  # fmt: skip
    # Transition times survive an unchanged status.
    again = st.patch(doc["conditions"])["status"]["conditions"]
    assert [x["lastTransitionTime"] for x in again] == [
        x["lastTransitionTime"] for x in doc["conditions"]
    ]
    a.finish(term(0))
    st.phase = "Succeeded"
    done = st.patch(doc["conditions"])["status"]
    c = done["containerStatuses"][0]
    assert c["state"]["running"] is None and c["state"]["terminated"]["reason"] == "Completed"
    ready = {x["type"]: x for x in done["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


# -- logs ----------------------------------------------------------------------
def test_log_selection(tmp_path: Path) -> None:
    f = tmp_path / "log"
    f.write_bytes(
        b"2025-01-01T00:00:00.000000001Z stdout F one\n"
        b"2025-01-01T00:00:05.5Z stderr F two\n"
        b"2025-01-01T00:00:09.000000000Z stdout P thr\n"
        b"2025-01-01T00:00:09.100000000Z stdout F ee\n"
        b"2025-01-01T00:00:10Z stdout F partial-without-newline"
    )
    assert logs.read(f)[0] == b"one\ntwo\nthree\n"
    assert logs.read(f, tail_lines=1)[0] == b"three\n"
    assert logs.read(f, tail_lines=2)[0] == b"two\nthree\n"
    assert logs.read(f, tail_lines=0)[0] == b""
    since = dt.datetime(2025, 1, 1, 0, 0, 5, tzinfo=dt.UTC)
    assert logs.read(f, since=since)[0] == b"two\nthree\n"
    assert logs.read(f, timestamps=True, tail_lines=1)[0].startswith(
        b"2025-01-01T00:00:09.000000000Z thr"
    )
    assert logs.read(f, limit_bytes=5)[0] == b"one\nt"
    assert logs.tail_text(f, lines=80, max_bytes=4) == "ree\n"
