"""Where a deployment's files live: the folder holding ``config/``, ``tenants/``, ``metadata/`` and ``var/``.

Every default path of the broker (settings, tenant files, the registry, keys, the demo) is
relative to this one folder, :data:`ROOT`.  It is

1. ``BROKER_HOME``, when set: an installed package (the Docker image installs it
   non-editable, into site-packages) finds its deployment there (``/app`` in the image);
2. otherwise the source tree the package was imported from, when it is one (a checkout
   with ``pyproject.toml`` next to ``broker/``: ``make demo``, the tests, an editable install);
3. otherwise the current directory.

It is read once, when the package is first imported: a process serves one deployment.
This module imports nothing of the broker, so that every other module may import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: The folder ``broker/`` sits in: the source tree when the package runs from a checkout.
SOURCE_TREE = Path(__file__).resolve().parent.parent


def deployment_root(environ: Mapping[str, str] = os.environ) -> Path:
    """The deployment's folder, by the rules of the module documentation."""
    explicit = environ.get("BROKER_HOME")
    if explicit:
        return Path(explicit).resolve()
    if (SOURCE_TREE / "pyproject.toml").is_file():
        return SOURCE_TREE
    return Path.cwd().resolve()


#: The deployment's folder for this process.
ROOT = deployment_root()
