"""A TensorFlow-Serving-compatible REST server for tfdeploy models (``tfdeploy serve``).

``app(...)`` returns the ASGI app to embed in any ASGI server. Importing this package is
cheap: starlette and uvicorn are imported only when an app is built or a server runs
(``pip install 'tfdeploy[serve]'``).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from .config import BatchingParameters, ModelConfig, ServerOptions, VersionPolicy

__all__ = ["app", "BatchingParameters", "ModelConfig", "ServerOptions", "VersionPolicy",
           "require_extra"]


def require_extra() -> None:
    """Raise ImportError naming the extra to install when the server's packages are missing."""
    missing = []
    for mod in ("starlette", "uvicorn"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ImportError(f"tfdeploy serve needs {' and '.join(missing)}: "
                          "pip install 'tfdeploy[serve]'")


def app(source=None, *, name: str | None = None, models: dict | None = None,
        options: ServerOptions | None = None, **settings):
    """The ASGI app of a TF-Serving-compatible server.

    ``source``: a model file (served as version 1 under its file stem, or ``name``), a base
    path holding numbered version folders (served under its folder name, or ``name``), or a
    ``td.Model`` (in memory; ``name`` required). ``models`` maps more names to such sources.
    ``options`` gives every setting at once; ``settings`` override single fields of
    :class:`ServerOptions` (``enable_batching=True``, ``batching=BatchingParameters(...)``,
    ``file_system_poll_wait_seconds=...``)."""
    require_extra()
    from .http import create_app

    opts = dataclasses.replace(options) if options is not None else ServerOptions()
    for k, v in settings.items():
        if not hasattr(opts, k):
            raise TypeError(f"app() got an unknown setting {k!r}")
        setattr(opts, k, v)
    sources = dict(models or {})
    if source is not None:
        if name is None:
            if not isinstance(source, (str, os.PathLike)):
                raise TypeError("app(model) needs name=... for an in-memory model")
            p = Path(source)
            name = p.stem if p.is_file() else p.resolve().name
        sources[name] = source
    in_memory = {}
    configs = list(opts.models)
    for n, src in sources.items():
        if isinstance(src, (str, os.PathLike)):
            configs.append(ModelConfig(n, os.path.abspath(os.fspath(src))))
        else:
            in_memory[n] = src
    opts.models = configs
    if not configs and not in_memory:
        raise ValueError("app() serves nothing: pass a model file, a base path, a Model or "
                         "options with models")
    return create_app(opts, in_memory)
