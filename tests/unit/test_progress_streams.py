"""The tools' own output read into progress figures. The lines are as the tools print
them (taken from real runs of go 1.26, Maven 3.8, pip, npm 11 and apt)."""

from __future__ import annotations

import json

import pytest

from stack.paths import REPO_ROOT
from stack.toolstreams import (
    Apt,
    GoBuild,
    GoPlan,
    Lines,
    Maven,
    Npm,
    Pip,
    npm_lock_packages,
    npm_reader_for,
    parse_size,
    size,
)


def feed(reader: object, lines: list[str], stderr: bool = False) -> list[str]:
    return [reader.feed(line + "\n", stderr=stderr) for line in lines]  # type: ignore[attr-defined]


def test_go_list_plan_counts_only_packages_go_build_will_compile() -> None:
    plan = GoPlan()
    feed(
        plan,
        [
            "go: downloading k8s.io/api v0.35.4",
            "go: downloading github.com/spf13/cobra v1.10.1",
            "go: finding module for package x",
        ],
        stderr=True,
    )
    logged = feed(
        plan,
        [
            "internal/goarch\tfalse\t",
            "unsafe\tfalse\t",
            "example.com/m/sub\ttrue\tbuild ID mismatch",
            "example.com/m/dep\ttrue\tstale dependency: example.com/m/sub",
            # A main package whose link is cached: go build compiles nothing for it.
            "example.com/m\ttrue\tnot installed but available in build cache",
        ],
    )
    assert plan.to_compile == {"example.com/m/sub", "example.com/m/dep"}
    assert len(plan.packages) == 5
    assert plan.downloads.modules == ["k8s.io/api@v0.35.4", "github.com/spf13/cobra@v1.10.1"]
    assert plan.detail() == (
        "2 Go modules downloaded (last github.com/spf13/cobra@v1.10.1), 5 packages listed"
    )
    assert logged == [""] * 5  # the plan is summed up once, not a line per package


def event(path: str, output: str, action: str = "build-output") -> str:
    return json.dumps({"ImportPath": path, "Action": action, "Output": output})


def test_go_build_counts_the_v_lines_and_decodes_the_rest_for_the_log() -> None:
    build = GoBuild(to_compile={"internal/abi", "example.com/m/sub", "example.com/m"})
    assert build.detail() == "0/3 packages compiled"
    logged = feed(
        build,
        [
            event("internal/abi", "internal/abi\n"),
            event("example.com/m/sub", "example.com/m/sub\n"),
            # The compiler's own words about a package are not its -v line.
            event("example.com/m/sub", "# example.com/m/sub\n"),
            event("example.com/m/sub", "sub/sub.go:3:2: warning\n"),
        ],
    )
    assert build.compiled == {"internal/abi", "example.com/m/sub"}
    assert build.detail() == "2/3 packages compiled"
    assert logged[2:] == ["# example.com/m/sub\n", "sub/sub.go:3:2: warning\n"]
    feed(build, [event("example.com/m", "example.com/m\n")])
    assert build.detail() == "3/3 packages compiled, linking"


def test_go_build_counts_a_package_the_plan_missed_and_names_failures() -> None:
    build = GoBuild(to_compile={"a"})
    feed(build, [event("a", "a\n"), event("b", "b\n")])
    assert build.total == 2
    assert build.detail() == "2/2 packages compiled, linking"
    out = feed(build, [json.dumps({"ImportPath": "b", "Action": "build-fail"})])
    assert out == ["build failed: b\n"]
    assert build.failed == ["b"] and build.detail() == "failed in b"


def test_go_build_passes_through_what_is_not_an_event() -> None:
    build = GoBuild(to_compile=set())
    logged = feed(build, ["go: downloading golang.org/x/net v0.40.0"], stderr=True)
    logged += feed(build, ["not json at all", "{broken", "[1, 2]"])
    assert logged == [
        "go: downloading golang.org/x/net v0.40.0\n",
        "not json at all\n",
        "{broken\n",
        "[1, 2]\n",
    ]
    assert build.downloads.modules == ["golang.org/x/net@v0.40.0"]
    assert build.compiled == set()


MAVEN = [
    "[INFO] Downloading from central: https://repo.maven.apache.org/maven2/net/sf/jopt-simple/"
    "jopt-simple/5.0.4/jopt-simple-5.0.4.pom",
    "[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/net/sf/jopt-simple/"
    "jopt-simple/5.0.4/jopt-simple-5.0.4.pom (14 kB at 43 kB/s)",
    "[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/org/apache/kafka/"
    "kafka_2.13/4.2.0/kafka_2.13-4.2.0.jar (6.9 MB at 12 MB/s)",
    "[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/org/x/y/1/y-1.jar "
    "(950 B at 3 kB/s)",
    "[INFO] Copying jackson-core-2.19.2.jar to /tmp/lib/jackson-core-2.19.2.jar",
]


def test_maven_counts_downloads_jars_bytes_and_copies() -> None:
    maven = Maven()
    assert feed(maven, MAVEN) == [line + "\n" for line in MAVEN]
    assert (maven.downloaded, maven.jars, maven.copied) == (3, 2, 1)
    assert maven.bytes == pytest.approx(14e3 + 6.9e6 + 950)
    assert maven.detail() == "3 artifacts downloaded (2 jars, 6.9 MB), 1 jars copied"


PIP = [
    "Looking in links: /opt/wheels",
    "Obtaining file:///work/main",
    "Collecting httpx",
    "  Downloading httpx-0.28.1-py3-none-any.whl (73 kB)",
    "Requirement already satisfied: idna in ./.venv/lib/python3.11/site-packages (3.20)",
    "Collecting anyio (from httpx)",
    "  Downloading anyio-4.16.0-py3-none-any.whl (134 kB)",
]


def test_pip_resolving_then_installing() -> None:
    pip = Pip()
    feed(pip, PIP)
    assert pip.detail() == "3 requirements resolved, 2 downloaded (207.0 kB)"
    feed(pip, ["Installing collected packages: typing_extensions, idna, anyio, httpx"])
    assert pip.detail() == "installing 4 packages"
    feed(pip, ["Successfully installed anyio-4.16.0 httpx-0.28.1 idna-3.20"])
    assert pip.detail() == "4 packages installed (3 requirements resolved)"


NPM = [
    "npm http fetch GET 200 https://registry.npmjs.org/elkjs 806ms (cache miss)",
    "npm http fetch GET 200 https://registry.npmjs.org/chart.js 949ms (cache miss)",
    "npm http fetch GET 200 https://registry.npmjs.org/@kurkle/color/-/color-0.3.4.tgz 134ms "
    "(cache miss)",
    "npm http fetch GET 200 https://registry.npmjs.org/elkjs/-/elkjs-0.9.3.tgz 377ms (cache miss)",
    "",
    "added 3 packages in 3s",
]


def test_npm_counts_tarballs_against_the_lockfile() -> None:
    lock = (REPO_ROOT / "gateway" / "console" / "package-lock.json").read_text()
    npm = npm_reader_for(lock)
    expected = [p for p in json.loads(lock)["packages"] if p.startswith("node_modules/")]
    assert npm.total == len(expected) > 0
    feed(npm, NPM)
    assert npm.fetched == 2  # metadata requests are not packages
    assert npm.detail() == f"2/{len(expected)} packages fetched"


def test_npm_lock_packages_skips_the_root_and_links() -> None:
    lock = {
        "packages": {
            "": {"name": "root"},
            "node_modules/a": {"version": "1"},
            "node_modules/a/node_modules/b": {"version": "2"},
            "node_modules/local": {"link": True},
        }
    }
    assert npm_lock_packages(lock) == 2
    assert npm_lock_packages({}) == 0
    assert Npm(total=0).detail() == "0/0 packages fetched"


APT = [
    "Reading package lists...",
    "dlstatus:1:0.0000:Retrieving file 1 of 2",
    "Get:1 http://deb.debian.org/debian bookworm/main amd64 libtext-charwidth-perl "
    "0.04-11 [9496 B]",
    "dlstatus:2:34.6106:Retrieving file 2 of 2",
    "pmstatus:cowsay:60.0000:Installing cowsay (amd64)",
]


def test_apt_status_lines_become_the_figure_and_stay_out_of_the_log() -> None:
    apt = Apt()
    logged = feed(apt, APT[:3])
    assert apt.detail() == "downloading 0%: Retrieving file 1 of 2"
    assert logged == [APT[0] + "\n", "", APT[2] + "\n"]
    feed(apt, APT[3:4])
    assert apt.detail() == "downloading 35%: Retrieving file 2 of 2"
    feed(apt, APT[4:])
    assert apt.detail() == "installing 60%: Installing cowsay (amd64)"
    assert feed(Apt(), ["dlstatus:1:notanumber:x"]) == [""]


def test_apt_update_counts_the_lists_it_read() -> None:
    apt = Apt()
    feed(apt, ["Hit:1 http://deb.debian.org/debian bookworm InRelease", "Get:2 http://x y [1 kB]"])
    assert apt.detail() == "2 package lists read"


def test_lines_says_the_last_non_blank_line() -> None:
    lines = Lines()
    feed(lines, ["formatting", "   ", "done: ok"])
    assert lines.detail() == "done: ok"


@pytest.mark.parametrize(
    ("text", "n"),
    [("14 kB", 14e3), ("4.8 MB", 4.8e6), ("950 B", 950), ("2 MiB", 2 * 1024**2), ("?", 0)],
)
def test_parse_size(text: str, n: float) -> None:
    assert parse_size(text) == pytest.approx(n)


def test_size() -> None:
    assert [size(950), size(12_300), size(48_100_000), size(2.5e12)] == [
        "950 B",
        "12.3 kB",
        "48.1 MB",
        "2500.0 GB",
    ]
