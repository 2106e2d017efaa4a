"""Datasets are named as the pod sees them, even where a process runner reached the
files through host folders (the local stack's kubelet cannot mount)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pipeline_runner import lineage

HOST_DATA, HOST_WS = "/tmp/stack/data-volume", "/tmp/stack/workspaces/ns/run"


@pytest.fixture
def mounted(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    mapping = {HOST_DATA: "/data", HOST_WS: "/workspace"}
    monkeypatch.setenv(lineage.CONTAINER_PATHS_ENV, json.dumps(mapping))
    lineage._container_paths.cache_clear()
    yield
    lineage._container_paths.cache_clear()


def test_host_folders_are_named_by_their_container_path(mounted: None) -> None:
    assert lineage.dataset_name(f"file://{HOST_DATA}/examples/orders.csv") == (
        "file",
        "/data/examples/orders.csv",
    )
    assert lineage.dataset_name(f"file://{HOST_WS}/extract.parquet") == (
        "file",
        "/workspace/extract.parquet",
    )
    # A sibling folder whose name merely starts the same is not under the mount.
    assert lineage.dataset_name(f"file://{HOST_DATA}-other/x.csv") == (
        "file",
        f"{HOST_DATA}-other/x.csv",
    )
    assert lineage.dataset_name("s3://bucket/tmp/stack/data-volume/x") == (
        "s3://bucket",
        "tmp/stack/data-volume/x",
    )


def test_without_the_variable_names_are_the_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lineage.CONTAINER_PATHS_ENV, raising=False)
    lineage._container_paths.cache_clear()
    assert lineage.dataset_name(f"file://{HOST_DATA}/a.csv") == ("file", f"{HOST_DATA}/a.csv")
    monkeypatch.setenv(lineage.CONTAINER_PATHS_ENV, "not json")
    lineage._container_paths.cache_clear()
    assert lineage.dataset_name(f"file://{HOST_DATA}/a.csv") == ("file", f"{HOST_DATA}/a.csv")
    lineage._container_paths.cache_clear()
