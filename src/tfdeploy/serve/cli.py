"""``tfdeploy serve``: TF Serving's command line, plus a short form for one file.

    tfdeploy serve --model_name NAME --model_base_path DIR --rest_api_port 8501
    tfdeploy serve --model_config_file models.config [--enable_batching ...]
    tfdeploy serve model.tfd [--port P] [--name N]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from .config import (
    ConfigError,
    ModelConfig,
    ServerOptions,
    load_batching_parameters,
    load_model_config,
)
from .logs import setup_logging

log = logging.getLogger("tfdeploy.serve")

# TF Serving flags accepted for drop-in command lines; they have no effect here
_IGNORED_FLAGS = ["grpc_socket_path", "num_load_threads", "num_unload_threads",
                  "max_num_load_retries", "load_retry_interval_micros",
                  "flush_filesystem_caches", "tensorflow_session_parallelism",
                  "tensorflow_inter_op_parallelism",
                  "use_alts_credentials", "platform_config_file", "saved_model_tags",
                  "grpc_channel_arguments", "grpc_max_threads", "enable_model_warmup",
                  "num_request_iterations_for_warmup", "monitoring_config_file",
                  "ssl_config_file", "allow_version_labels_for_unavailable_models",
                  "enable_grpc_healthcheck_service", "prefer_tflite_model", "enable_profiler",
                  "thread_pool_factory_config_file", "mixed_precision", "skip_initialize_tpu",
                  "remove_unused_fields_from_bundle_metagraph", "xla_cpu_compilation_enabled"]


def _bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "t", "yes", "y"):
        return True
    if v in ("0", "false", "f", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``serve`` subcommand on the main parser's subparsers."""
    p = subparsers.add_parser(
        "serve", help="serve models over TensorFlow Serving's REST API",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="short form: one model file to serve")
    p.add_argument("--name", help="short form: the model's name (default: the file stem)")
    p.add_argument("--port", type=int, help="short form: HTTP port (default 8501); with "
                   "TF Serving's flags it is the gRPC port, which is not served")
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    tf = p.add_argument_group("TensorFlow Serving's flags")
    tf.add_argument("--model_name", default=None, help="name of the model (default 'default')")
    tf.add_argument("--model_base_path", help="folder of numbered version folders")
    tf.add_argument("--model_config_file", help="models to serve: a ModelServerConfig in "
                    "text format, or JSON")
    tf.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                    help="re-read the model config file this often (0: never)")
    tf.add_argument("--rest_api_port", type=int, help="HTTP port (default 8501)")
    tf.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                    help="look for new or changed versions this often (0: only at start)")
    tf.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False,
                    help="merge concurrent requests into one evaluation")
    tf.add_argument("--batching_parameters_file", help="BatchingParameters in text format")
    tf.add_argument("--rest_api_num_threads", type=int, default=0,
                    help="threads evaluating requests (default: 2 per CPU, at least 4)")
    tf.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                    help="answer 504 after this long, and stop the request's loops soon "
                    "after (0: no timeout)")
    tf.add_argument("--rest_api_enable_cors_support", type=_bool, nargs="?", const=True,
                    default=False, help="add CORS headers, answer preflight requests")
    tf.add_argument("--tensorflow_intra_op_parallelism", type=int, default=1,
                    help="threads inside one evaluation (default 1: requests run in "
                    "parallel threads already; 0: tfdeploy's default, every CPU)")
    for flag in _IGNORED_FLAGS:
        tf.add_argument(f"--{flag}", default=None, help=argparse.SUPPRESS)
    own = p.add_argument_group("tfdeploy's flags")
    own.add_argument("--workers", type=int, default=1, help="server processes (each maps the "
                     "same model snapshots)")
    own.add_argument("--rest_api_max_body_bytes", type=int, default=64 << 20,
                     help="larger request bodies get 413 (default 64 MiB)")
    own.add_argument("--snapshot_dir", help="where loaded model files are snapshotted "
                     "(default: a temporary folder, removed at exit)")
    own.add_argument("--access_log", type=_bool, nargs="?", const=True, default=True,
                     help="log one line per request (default true)")
    own.add_argument("--graceful_shutdown_seconds", type=float, default=30.0,
                     help="on SIGTERM, wait this long for in-flight requests")
    own.add_argument("--log_level", default="info",
                     choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)
    return p


def options_from_args(args) -> tuple[ServerOptions, int]:
    """The server options and HTTP port of parsed arguments; ConfigError if inconsistent."""
    given = [f for f, v in (("a model file", args.model), ("--model_base_path",
                                                           args.model_base_path),
                            ("--model_config_file", args.model_config_file)) if v]
    if len(given) != 1:
        raise ConfigError("serve one model file, or --model_base_path, or --model_config_file"
                          + (f" (got {' and '.join(given)})" if given else ""))
    if args.model:
        path = Path(args.model)
        if not path.is_file():
            raise ConfigError(f"no such model file: {args.model!r}")
        _check_loads(path)
        models = [ModelConfig(args.name or args.model_name or path.stem, str(path.resolve()))]
        port = args.port or args.rest_api_port or 8501
    else:
        if args.name:
            raise ConfigError("--name belongs to the short form; use --model_name")
        if args.model_base_path:
            models = [ModelConfig(args.model_name or "default",
                                  os.path.abspath(args.model_base_path))]
        else:
            models = load_model_config(args.model_config_file)
        if args.port:
            log.warning("--port is TF Serving's gRPC port, which tfdeploy does not serve; "
                        "REST is served on --rest_api_port (default 8501)")
        port = args.rest_api_port or 8501
    batching = None
    if args.batching_parameters_file:
        batching = load_batching_parameters(args.batching_parameters_file)
        if not args.enable_batching:
            log.warning("--batching_parameters_file has no effect without --enable_batching")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    opts = ServerOptions(
        models=models, model_config_file=args.model_config_file,
        model_config_file_poll_wait_seconds=args.model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
        enable_batching=args.enable_batching, batching=batching,
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        max_body_bytes=args.rest_api_max_body_bytes,
        enable_cors=args.rest_api_enable_cors_support, snapshot_dir=args.snapshot_dir,
        access_log=args.access_log, blas_threads=args.tensorflow_intra_op_parallelism)
    return opts, port


def _check_loads(path: Path) -> None:
    """The short form serves one file: say now if it cannot be served, rather than start a
    server that answers 404 (a base path may get good versions later; a file may not)."""
    import tfdeploy as td

    try:
        td.load(path)
    except td.TFDeployError as e:
        raise ConfigError(f"{path} cannot be served: {type(e).__name__}: {e}") from None


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)


def run(args) -> int:
    """Run the server until SIGINT/SIGTERM; in-flight requests are finished first."""
    setup_logging(args.log_level)
    from . import require_extra

    try:
        require_extra()
        opts, port = options_from_args(args)
    except (ImportError, ConfigError) as e:
        print(f"tfdeploy serve: {e}", file=sys.stderr)
        return 2
    for flag in _IGNORED_FLAGS:
        if getattr(args, flag) is not None:
            log.warning("--%s has no effect in tfdeploy serve", flag)
    own_dir = opts.snapshot_dir is None
    if own_dir:
        opts.snapshot_dir = tempfile.mkdtemp(prefix="tfdeploy-serve-")
    import uvicorn

    from .http import ENV_OPTIONS, app_from_env, create_app

    common = dict(host=args.host, port=port, log_level=args.log_level, access_log=False,
                  timeout_graceful_shutdown=args.graceful_shutdown_seconds or None)
    log.info("serving %s on http://%s:%d (workers: %d, batching: %s, snapshots in %s)",
             [m.name for m in opts.models], args.host, port, args.workers,
             "on" if opts.enable_batching else "off", opts.snapshot_dir)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again; this handler
    # turns that into a clean exit (status 0) that still removes the snapshots below
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        if args.workers == 1:
            uvicorn.run(create_app(opts), **common)
        else:  # each worker process builds its own app from the same options
            opts.metrics_dir = tempfile.mkdtemp(prefix="tfdeploy-serve-metrics-")
            os.environ[ENV_OPTIONS] = opts.to_json()
            uvicorn.run(f"{app_from_env.__module__}:app_from_env", factory=True,
                        workers=args.workers, **common)
    finally:
        if own_dir:
            shutil.rmtree(opts.snapshot_dir, ignore_errors=True)
        if opts.metrics_dir:
            shutil.rmtree(opts.metrics_dir, ignore_errors=True)
    return 0
