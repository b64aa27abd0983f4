"""The WSGI entry point for servers that import an application object (``broker.wsgi:application``).

Importing this module builds the broker from the environment: it is the one module
whose import does so, and only WSGI servers import it.  ``broker serve`` has every
worker import it after the fork, so no connection or lock crosses a fork.  The broker
runs behind :func:`broker.web.protect_broker` (correlation ids, request limits, security
headers), which :class:`broker.app.BrokerApp` builds in.
"""

from broker.app import create_app, freeze_heap
from broker.cli import configure_logging
from broker.metrics.exposition import with_metrics
from broker.metrics.multiprocess import at_worker_exit
from broker.settings import Settings

_settings = Settings.from_env()
configure_logging(_settings.log_level)
_broker = create_app(_settings)
# A server worker serves one application for its life: keep the collector off what it is built of.
_broker.freeze_heap = True
freeze_heap()
# /metrics on BROKER_METRICS_PORT only (decision 16); the worker's live gauges go when it exits.
application = with_metrics(_broker, _settings.metrics_port)
at_worker_exit()
