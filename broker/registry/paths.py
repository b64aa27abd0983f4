"""Files a tenant file names: only inside the directory the operator configured.

A tenant file is untrusted input, so a path it names is accepted only when it stays
inside the directory meant for it, both as written (no ``..``) and once symlinks are
resolved (:meth:`pathlib.Path.resolve`).  Symlinks that stay inside are fine (a
Kubernetes secret volume is made of them); one that leads outside is refused.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath


def contained(directory: Path, name: str | PurePath, *, relative_to: Path | None = None) -> tuple[Path, Path] | None:
    """``(resolved path, path relative to directory as written)`` if ``name`` lies inside
    ``directory``, else ``None``.

    A relative ``name`` is taken from ``relative_to`` (default: ``directory`` itself).
    ``..`` anywhere in ``name`` is refused outright.
    """
    if ".." in PurePath(name).parts:
        return None
    path = Path(name)
    if not path.is_absolute():
        path = Path(relative_to if relative_to is not None else directory) / path
    written = Path(os.path.abspath(path))
    base = Path(os.path.abspath(directory))
    try:
        relative = written.relative_to(base)
    except ValueError:
        return None
    resolved = written.resolve()
    try:
        resolved.relative_to(base.resolve())
    except ValueError:
        return None
    return resolved, relative
