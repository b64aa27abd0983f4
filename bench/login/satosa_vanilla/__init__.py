"""Vanilla SATOSA 8.6, configured as an operator would from SATOSA's examples, for the same flow.

:func:`config.generate` writes ``proxy_conf.yaml`` and the plugin files into a directory;
:class:`config.Vanilla` runs it with ``gunicorn satosa.wsgi:app``.
"""

from .config import Vanilla, generate

__all__ = ["Vanilla", "generate"]
