"""``broker demo``: run the embedded default until interrupted (``--prepare``: only write its files)."""

from __future__ import annotations

import os
import signal
import threading

from broker.demo.stack import DemoStack, Ports


def run_demo(*, prepare_only: bool = False) -> int:
    from broker.cli import configure_logging

    configure_logging(os.environ.get("BROKER_LOG_LEVEL", "INFO"))
    port = int(os.environ.get("BROKER_PORT") or 8000)
    stack = DemoStack(ports=Ports(broker=port), host=os.environ.get("BROKER_DEMO_HOST", "127.0.0.1"))
    if prepare_only:
        stack.prepare()
        print(f"The demo's files are ready: the demo cities' IdP metadata in {_shown(stack.metadata_dir / 'demo')}, "
              f"their keys and client secrets in {_shown(stack.demo_dir)}, the two demo services registered in "
              f"{_shown(stack.registry_dir)}.\nNext: `broker check` validates the shipped tenants; `broker demo` "
              "runs the demo.", flush=True)
        return 0
    stack.start()
    print("DigiOne Login demo is running:\n" + stack.describe(), flush=True)
    print(f"Open {stack.service_urls[0]} and sign in; Ctrl-C stops.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    stack.stop()
    return 0


def _shown(path) -> str:
    from broker.registry.check import shown

    return shown(path)
