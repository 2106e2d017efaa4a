"""`python -m stack.kubelet`: run the process kubelet (or `stop-pods` to end its pods)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from stack.kubelet import images
from stack.kubelet.api import Api
from stack.kubelet.kubelet import Kubelet, stop_all_pods
from stack.kubelet.logserver import KubeletHTTPServer, tls_context

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stack.kubelet", description=__doc__)
    p.add_argument("--kubeconfig", required=False)
    p.add_argument("--node-name", default="local")
    p.add_argument("--port", type=int, default=10250)
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument("--client-ca", type=Path, help="require client certificates signed by this CA")
    p.add_argument("--images", type=Path, default=None, help="image → runtime config")
    p.add_argument("--max-pods", type=int, default=110)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=["run", "stop-pods"],
        help="run (default) or stop-pods: kill every container process under --state-dir",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    log = logging.getLogger("kubelet")

    if args.action == "stop-pods":
        n = stop_all_pods(args.state_dir)
        log.info("stopped container processes", extra={"count": n})
        return 0
    if not args.kubeconfig or not args.tls_cert or not args.tls_key:
        log.error("--kubeconfig, --tls-cert and --tls-key are required")
        return 2

    image_config = images.load(args.images or images.DEFAULT_CONFIG)
    api = Api(args.kubeconfig)
    kubelet = Kubelet(
        api, args.node_name, args.port, args.state_dir,
        images=image_config, max_pods=args.max_pods,
    )  # fmt: skip
    server = KubeletHTTPServer(
        args.port, kubelet.locate, tls_context(args.tls_cert, args.tls_key, args.client_ca)
    )
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping (container processes keep running)", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "process kubelet starting",
        extra={"node": args.node_name, "port": args.port, "state_dir": str(args.state_dir),
               "images": str(image_config.source)},
    )  # fmt: skip
    runner = threading.Thread(target=kubelet.run, args=(stop,), name="kubelet", daemon=True)
    runner.start()
    while not stop.wait(0.5):
        if not runner.is_alive():
            log.error("kubelet loop ended unexpectedly")
            return 1
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
