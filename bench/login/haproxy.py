"""The load balancer of the soak test: Debian's ``haproxy``, round robin on loopback.

Configured as docs/operations.md asks of the deployment in front:

* health checks on ``/readyz`` every :data:`CHECK_INTERVAL` (two failures take an instance
  out, two successes put it back), so an instance whose store, keys or registry version is
  missing gets no logins;
* a connection refused by a dead instance is sent to another one at once
  (``retries`` with ``option redispatch 1``: every retry may go elsewhere), so only the
  requests an instance was processing when it died are lost; a request that reached an
  instance is never sent again (``retry-on`` stays at its default, connection failures
  only: a POST to ``/token`` or the ACS may have run);
* every request to an instance has a connection of its own (``option http-server-close``;
  the clients keep theirs to the proxy alive): uWSGI closes the connection after every
  answer anyway (docs/operations.md, "What the deployment in front must do"), so haproxy
  never holds an idle server connection that is about to be closed;
* every answer names the instance that gave it (``X-Soak-Server``), which is how the soak
  test knows where each request of a login went.  A real deployment has no such header.

The process is started in the foreground (``-db``) as its own session and stopped by its id.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import requests

#: Seconds between health checks of one instance.
CHECK_INTERVAL = 0.5


def config(port: int, backends: dict[str, int]) -> str:
    servers = "\n".join(f"  server {name} 127.0.0.1:{p} check" for name, p in backends.items())
    ms = int(CHECK_INTERVAL * 1000)
    return f"""global
  maxconn 4000

defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
  timeout check 2s
  retries 3
  option redispatch 1
  option http-server-close
  default-server inter {ms}ms fastinter {ms}ms downinter {ms}ms fall 2 rise 2

frontend broker
  bind 127.0.0.1:{port}
  default_backend brokers

backend brokers
  balance roundrobin
  option httpchk
  http-check send meth GET uri /readyz
  http-check expect status 200
  http-response set-header X-Soak-Server %[srv_name]
{servers}
"""


class Haproxy:
    def __init__(self, root: Path, port: int, backends: dict[str, int]):
        root.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{port}"
        self.cfg = root / "haproxy.cfg"
        self.cfg.write_text(config(port, backends))
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], capture_output=True, text=True,
                               check=False)
        if check.returncode:
            raise RuntimeError(f"haproxy refuses its configuration:\n{check.stdout}{check.stderr}")
        self._log = open(root / "haproxy.log", "ab")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the proxy has a healthy instance behind it (its ``/readyz`` answers 200)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.process.returncode}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no healthy instance behind haproxy after {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
