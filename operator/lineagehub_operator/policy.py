"""What a PipelineRun may make its stages do, checked before any of its Jobs exists.

The CRD schema says what a spec looks like; this says what the operator agrees to run
on the cluster's behalf (see `config.py` for the settings):

- `spec.image`: the runner image, or one the admin allowed;
- source and sink URIs: under an allowed prefix, when prefixes are configured;
- `file://`: only paths under the data mount (when one is configured) and the run's
  workspace: never the service-account token, the container's own files or the host's;
- `http(s)://` sources, `s3.endpoint`s and `clickhouse://` sinks: hosts that resolve
  to public addresses only, unless the admin allowed the private target.

A refused run ends `Failed` with reason `PolicyViolation` and a message naming each
field and how to fix it. The stages check again at run time what only they can see (every
redirect hop of a download, the address a connection really goes to).
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from lineagehub.api.egress import ALLOWED_PRIVATE_TARGETS_ENV, TargetRefused, system_resolver
from lineagehub.api.pipelinerun import IDENTIFIER_PATTERN, PipelineRunSpec
from lineagehub.datasets import redact_uri
from lineagehub_operator.config import OperatorConfig
from lineagehub_operator.manifests import WORKSPACE_MOUNT

RESOLVE_TIMEOUT_SECONDS = 5.0
IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_ALLOW_TARGET = (
    "or have the operator's admin allow that target "
    f"({ALLOWED_PRIVATE_TARGETS_ENV}, chart value operator.policy.allowedPrivateTargets)"
)


@dataclass(frozen=True)
class Violation:
    """One thing the policy refuses: the field, what is wrong, and how to fix it."""

    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}; {self.fix}"


def message(violations: Sequence[Violation]) -> str:
    """The status message of a refused run."""
    return "Refused by the operator's policy: " + " | ".join(str(v) for v in violations)


def image_allowed(image: str, config: OperatorConfig) -> bool:
    if image == config.runner_image:
        return True
    for entry in config.allowed_images:
        if entry.endswith("*") and image.startswith(entry[:-1]):
            return True
        if image == entry:
            return True
    return False


def _norm_path(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/")) if path else "/"


def _within_prefix(uri: str, prefix: str) -> bool:
    """`uri` is `prefix` or below it, compared part by part (scheme, host, port, whole
    path segments) so `https://ok.example@evil.test/` is not under `https://ok.example`."""
    try:
        u, p = urlsplit(uri), urlsplit(prefix)
        u_port, p_port = u.port, p.port
    except ValueError:
        return False
    if u.scheme.lower() != p.scheme.lower():
        return False
    if (u.hostname or "") != (p.hostname or "") or u_port != p_port:
        return False
    if p.username is not None and (u.username, u.password) != (p.username, p.password):
        return False
    base = unquote(p.path)
    if not base or base == "/":
        return True
    path = _norm_path(unquote(u.path))
    if base.endswith("/"):
        return path.startswith(_norm_path(base).rstrip("/") + "/")
    return path == _norm_path(base) or path.startswith(_norm_path(base).rstrip("/") + "/")


def file_roots(config: OperatorConfig) -> list[str]:
    """The folders a `file://` URI may name: the run's workspace and the data mount."""
    roots = [WORKSPACE_MOUNT]
    if config.data_host_path:
        roots.append(_norm_path(config.data_mount_path))
    return roots


def _check_file(field: str, parts: SplitResult, config: OperatorConfig) -> Violation | None:
    roots = file_roots(config)
    where = " or ".join(f"{r}/" for r in roots)
    if parts.netloc not in ("", "localhost"):
        return Violation(
            field,
            f"file URI names host {parts.netloc!r}",
            f"write an absolute path under {where}, e.g. file://{roots[-1]}/x.csv",
        )
    raw = unquote(parts.path)
    if "\x00" in raw or ".." in raw.split("/"):
        return Violation(
            field,
            f"path {raw!r} climbs out of its folder with '..'",
            f"name the file directly, under {where}",
        )
    path = _norm_path(raw)
    if any(path.startswith(root.rstrip("/") + "/") for root in roots):
        return None
    data = (
        ""
        if config.data_host_path
        else " (no data volume is mounted: the operator's admin sets one with "
        "LINEAGEHUB_DATA_HOST_PATH, chart value operator.data.hostPath)"
    )
    return Violation(
        field,
        f"path {path} is outside the folders a stage may use",
        f"use a path under {where}{data}",
    )


def _check_host(
    field: str,
    shown: str,
    host: str | None,
    config: OperatorConfig,
    resolve: Callable[[str], Sequence[str]],
) -> Violation | None:
    if not host:
        return Violation(field, f"{shown} names no host", "give the host to connect to")
    try:
        config.private_targets.check_host(host, resolve)
    except TargetRefused as refused:
        return Violation(
            field,
            f"{shown} reaches {host}, which {_verb(refused.reason)}",
            f"point it at a public host, {_ALLOW_TARGET}",
        )
    except OSError:
        # Not resolvable here: the stage cannot connect to it either, and it checks the
        # address it connects to itself.
        return None
    return None


def _verb(reason: str) -> str:
    """`1.2.3.4 is a private address` -> `is a private address` (the host is named)."""
    if reason.startswith("resolves to"):
        return reason
    return reason.split(" ", 1)[1] if " is a " in reason else reason


def _uri_violations(
    field: str,
    uri: str,
    config: OperatorConfig,
    resolve: Callable[[str], Sequence[str]],
) -> list[Violation]:
    shown = redact_uri(uri)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as err:
        return [Violation(field, f"{shown} is not a valid URI ({err})", "fix the URI")]
    found: list[Violation] = []
    prefixes = config.allowed_uri_prefixes
    if prefixes and not any(_within_prefix(uri, p) for p in prefixes):
        found.append(
            Violation(
                field,
                f"{shown} is under none of the allowed prefixes ({', '.join(prefixes)})",
                "use a URI under one of them, or have the operator's admin add a prefix "
                "(LINEAGEHUB_ALLOWED_URI_PREFIXES, chart value operator.policy.allowedUriPrefixes)",
            )
        )
    scheme = parts.scheme.lower()
    problem: Violation | None = None
    if scheme == "file":
        problem = _check_file(field, parts, config)
    elif scheme in ("http", "https", "clickhouse"):
        problem = _check_host(field, shown, parts.hostname, config, resolve)
    if problem is not None:
        found.append(problem)
    if scheme == "clickhouse":
        table = _check_table(field, parts)
        if table is not None:
            found.append(table)
    return found


def _check_table(field: str, parts: SplitResult) -> Violation | None:
    """A clickhouse:// sink names `database.table` (or `database/table`) by plain
    identifiers: a name the runner would have to quote is refused here already."""
    path = unquote(parts.path).strip("/")
    database, sep, table = path.partition("/") if "/" in path else path.partition(".")
    if sep and IDENTIFIER.match(database) and IDENTIFIER.match(table):
        return None
    return Violation(
        field,
        f"the ClickHouse table {path!r} is not database.table of plain identifiers",
        "name it as clickhouse://host:9000/database.table with letters, digits and _",
    )


def hosts_of(spec: PipelineRunSpec) -> list[str]:
    """Every host name the spec makes a stage connect to."""
    hosts: list[str] = []
    for uri, s3 in ((spec.source.uri, spec.source.s3), (spec.sink.uri, spec.sink.s3)):
        for candidate in (uri, s3.endpoint if s3 is not None else None):
            if not candidate:
                continue
            try:
                parts = urlsplit(candidate)
                host = parts.hostname
            except ValueError:
                continue
            if parts.scheme.lower() in ("http", "https", "clickhouse") and host:
                hosts.append(host)
    return list(dict.fromkeys(hosts))


def evaluate(
    spec: PipelineRunSpec,
    config: OperatorConfig,
    resolve: Callable[[str], Sequence[str]] = system_resolver,
) -> list[Violation]:
    """Everything the policy refuses in `spec` (empty: the run may go ahead)."""
    found: list[Violation] = []
    if spec.image is not None and not image_allowed(spec.image, config):
        found.append(
            Violation(
                "spec.image",
                f"image {spec.image!r} is not one the operator runs",
                f"remove spec.image to run the runner image {config.runner_image}, or have "
                "the operator's admin allow it "
                "(LINEAGEHUB_ALLOWED_IMAGES, chart value operator.policy.allowedImages)",
            )
        )
    for side, target in (("source", spec.source), ("sink", spec.sink)):
        found += _uri_violations(f"spec.{side}.uri", target.uri, config, resolve)
        if target.s3 is not None and target.s3.endpoint:
            endpoint = target.s3.endpoint
            try:
                host = urlsplit(endpoint).hostname
            except ValueError:
                host = None
            problem = _check_host(
                f"spec.{side}.s3.endpoint", redact_uri(endpoint), host, config, resolve
            )
            if problem is not None:
                found.append(problem)
    return found


async def check(
    spec: PipelineRunSpec,
    config: OperatorConfig,
    resolve: Callable[[str], Sequence[str]] = system_resolver,
    resolve_seconds: float = RESOLVE_TIMEOUT_SECONDS,
) -> list[Violation]:
    """`evaluate` with every host resolved first, off the event loop and bounded in time
    (a host that does not resolve in time counts as not resolvable)."""
    answers: dict[str, Sequence[str] | OSError] = {}
    for host in hosts_of(spec):
        try:
            async with asyncio.timeout(resolve_seconds):
                answers[host] = await asyncio.to_thread(resolve, host)
        except OSError as err:  # TimeoutError included
            answers[host] = err

    def resolved(host: str) -> Sequence[str]:
        answer = answers.get(host)
        if answer is None:
            return resolve(host)
        if isinstance(answer, OSError):
            raise answer
        return answer

    return evaluate(spec, config, resolved)
