"""What the server serves and how: models, version policies, labels, batching, options.

Reads TF Serving's own files: the model config (``--model_config_file``: the text format of
``ModelServerConfig``, or its JSON mapping) and the batching parameters
(``--batching_parameters_file``: text format of ``BatchingParameters``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import textproto

__all__ = ["BatchingParameters", "ConfigError", "ModelConfig", "ServerOptions",
           "VersionPolicy", "load_batching_parameters", "load_model_config",
           "parse_batching_parameters", "parse_model_config"]


class ConfigError(ValueError):
    """A config file or flag combination is invalid; the message names the file and field."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions on disk to serve: the latest N, all, or specific ones."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve among ``available`` (loadable versions on disk)."""
        ordered = sorted(set(available))
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions:] if self.num_versions > 0 else []


@dataclass(frozen=True)
class ModelConfig:
    """One served model: TF Serving's ``ModelConfig`` message."""

    name: str
    base_path: str
    platform: str = "tensorflow"
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's ``BatchingParameters``, with its defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 100
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0


@dataclass
class ServerOptions:
    """Everything a server process needs; JSON-serializable so worker processes get it too."""

    models: list[ModelConfig] = field(default_factory=list)
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = False
    batching: BatchingParameters | None = None
    rest_api_num_threads: int = 0
    rest_api_timeout_in_ms: int = 30000
    max_body_bytes: int = 64 << 20
    enable_cors: bool = False
    snapshot_dir: str | None = None
    access_log: bool = True
    blas_threads: int = 0  # threads inside one evaluation (td.setup(threads=)); 0: default
    metrics_dir: str | None = None  # --workers: where workers share their metrics

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerOptions:
        d = json.loads(text)
        d["models"] = [_model_from_dict(m) for m in d["models"]]
        if d.get("batching") is not None:
            b = d["batching"]
            b["allowed_batch_sizes"] = tuple(b["allowed_batch_sizes"])
            d["batching"] = BatchingParameters(**b)
        return cls(**d)


def _model_from_dict(d: dict) -> ModelConfig:
    p = d["policy"]
    return ModelConfig(d["name"], d["base_path"], d["platform"],
                       VersionPolicy(p["kind"], p["num_versions"], tuple(p["versions"])),
                       dict(d["labels"]))


# ---------------------------------------------------------------------------- model config

def load_model_config(path: str) -> list[ModelConfig]:
    """The models of a ``--model_config_file`` (text format, or JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the model config file {path!r}: {e}") from None
    base = os.path.dirname(os.path.abspath(path))
    try:
        return parse_model_config(text, base_dir=base)
    except ConfigError as e:
        raise ConfigError(f"model config file {path!r}: {e}") from None


def parse_model_config(text: str, base_dir: str | None = None) -> list[ModelConfig]:
    """Models from the text of a model config: TF Serving's text format or its JSON form.

    Relative ``base_path`` values are taken relative to ``base_dir`` when given."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"invalid JSON: {e}") from None
        msg = _from_json(doc)
    else:
        try:
            msg = textproto.parse(text)
        except textproto.TextFormatError as e:
            raise ConfigError(str(e)) from None
    return _model_server_config(msg, base_dir)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _from_json(v: Any, in_map: bool = False) -> Any:
    """A JSON-mapped message in the text parser's shape: ``{field: [values]}``."""
    if isinstance(v, dict):
        if in_map:  # version_labels is a map<string, int64>: keys are data, not fields
            return [{"key": [k], "value": [_int(x, "version_labels value")]}
                    for k, x in v.items()]
        out: dict[str, list] = {}
        for k, x in v.items():
            name = _snake(k)
            if name == "version_labels":
                out[name] = _from_json(x, in_map=True)
            elif isinstance(x, list):
                out[name] = [_from_json(e) for e in x]
            else:
                out[name] = [_from_json(x)]
        return out
    return v


def _fields(msg: Any, what: str, allowed: set[str]) -> dict[str, list]:
    if not isinstance(msg, dict):
        raise ConfigError(f"{what} must be a message ({{ ... }}), got {msg!r}")
    unknown = sorted(set(msg) - allowed)
    if unknown:
        raise ConfigError(f"{what} has unknown field(s) {unknown} (known: {sorted(allowed)})")
    return msg


def _one(msg: dict, name: str, what: str, default=None):
    vals = msg.get(name, [])
    if len(vals) > 1:
        raise ConfigError(f"{what}: field {name!r} given {len(vals)} times")
    return vals[0] if vals else default


def _int(v, what: str) -> int:
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v):  # JSON maps int64 to strings
        return int(v)
    if type(v) is not int:
        raise ConfigError(f"{what} must be an integer, got {v!r}")
    return v


def _str(v, what: str) -> str:
    if not isinstance(v, str) or isinstance(v, textproto.Identifier):
        raise ConfigError(f"{what} must be a quoted string, got {v!r}")
    return v


def _model_server_config(msg: dict, base_dir: str | None) -> list[ModelConfig]:
    top = _fields(msg, "the model server config", {"model_config_list", "custom_model_config"})
    if "custom_model_config" in top:
        raise ConfigError("custom_model_config is not supported; use model_config_list")
    lst = _one(top, "model_config_list", "the model server config")
    if lst is None:
        raise ConfigError("no model_config_list")
    configs = _fields(lst, "model_config_list", {"config"}).get("config", [])
    models = [_model_config(c, i, base_dir) for i, c in enumerate(configs)]
    if not models:
        raise ConfigError("model_config_list holds no config")
    names = [m.name for m in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"model name(s) {dup} configured more than once")
    return models


_CONFIG_FIELDS = {"name", "base_path", "model_platform", "model_type", "model_version_policy",
                  "version_labels", "logging_config"}


def _model_config(c: Any, i: int, base_dir: str | None) -> ModelConfig:
    what = f"config #{i + 1}"
    c = _fields(c, what, _CONFIG_FIELDS)
    name = _str(_one(c, "name", what, ""), f"{what} name")
    if not name:
        raise ConfigError(f"{what} has no name")
    what = f"config {name!r}"
    base = _str(_one(c, "base_path", what, ""), f"{what} base_path")
    if not base:
        raise ConfigError(f"{what} has no base_path")
    if base_dir is not None and not os.path.isabs(base):
        base = os.path.join(base_dir, base)
    platform = _str(_one(c, "model_platform", what, "tensorflow"), f"{what} model_platform")
    if platform not in ("tensorflow", "tfdeploy"):
        raise ConfigError(f"{what}: model_platform {platform!r} is not served (only "
                          "'tensorflow' models converted to tfdeploy files)")
    policy = _policy(_one(c, "model_version_policy", what), what)
    labels: dict[str, int] = {}
    for entry in c.get("version_labels", []):
        e = _fields(entry, f"{what} version_labels", {"key", "value"})
        key = _str(_one(e, "key", what, ""), f"{what} version_labels key")
        if key in labels:
            raise ConfigError(f"{what}: version label {key!r} given twice")
        labels[key] = _int(_one(e, "value", what, 0), f"{what} version_labels value")
    return ModelConfig(name, base, platform, policy, labels)


def _policy(p: Any, what: str) -> VersionPolicy:
    if p is None:
        return VersionPolicy()
    p = _fields(p, f"{what} model_version_policy", {"latest", "all", "specific"})
    if len(p) != 1:
        raise ConfigError(f"{what}: model_version_policy takes exactly one of latest, all, "
                          f"specific (got {sorted(p)})")
    kind, vals = next(iter(p.items()))
    body = _fields(vals[0] if vals else {}, f"{what} {kind} policy",
                   {"latest": {"num_versions"}, "all": set(),
                    "specific": {"versions"}}[kind])
    if kind == "latest":
        n = _int(_one(body, "num_versions", what, 1), f"{what} num_versions")
        if n < 1:
            raise ConfigError(f"{what}: num_versions must be at least 1, got {n}")
        return VersionPolicy("latest", n)
    if kind == "specific":
        versions = tuple(_int(v, f"{what} versions") for v in body.get("versions", []))
        if not versions:
            raise ConfigError(f"{what}: the specific version policy lists no versions")
        return VersionPolicy("specific", 1, versions)
    return VersionPolicy("all")


# ---------------------------------------------------------------------------- batching

_BATCHING_INTS = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                  "num_batch_threads", "max_execution_batch_size"}
_BATCHING_BOOLS = {"pad_variable_length_inputs", "enable_large_batch_splitting"}
_BATCHING_IGNORED = {"thread_pool_name", "mixed_priority_batching_policy",
                     "low_priority_max_batch_size", "low_priority_batch_timeout_micros",
                     "low_priority_max_enqueued_batches", "low_priority_allowed_batch_sizes",
                     "batch_padding_policy"}


def load_batching_parameters(path: str) -> BatchingParameters:
    """A ``--batching_parameters_file`` (text format ``BatchingParameters``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read the batching parameters file {path!r}: {e}") from None
    try:
        return parse_batching_parameters(text)
    except ConfigError as e:
        raise ConfigError(f"batching parameters file {path!r}: {e}") from None


def parse_batching_parameters(text: str) -> BatchingParameters:
    """``max_batch_size { value: 128 }`` ... (the wrapper messages may be left out)."""
    try:
        msg = textproto.parse(text)
    except textproto.TextFormatError as e:
        raise ConfigError(str(e)) from None
    msg = _fields(msg, "BatchingParameters",
                  _BATCHING_INTS | _BATCHING_BOOLS | _BATCHING_IGNORED | {"allowed_batch_sizes"})
    kw: dict[str, Any] = {}
    for name in _BATCHING_INTS | _BATCHING_BOOLS:
        v = _one(msg, name, "BatchingParameters")
        if isinstance(v, dict):  # google.protobuf.Int64Value / BoolValue wrapper
            v = _one(_fields(v, name, {"value"}), "value", name)
        if v is None:
            continue
        if name in _BATCHING_BOOLS:
            if not isinstance(v, bool):
                raise ConfigError(f"{name} must be true or false, got {v!r}")
        else:
            v = _int(v, name)
            if v < 0 or (v == 0 and name in ("max_batch_size", "num_batch_threads",
                                               "max_enqueued_batches")):
                raise ConfigError(f"{name} must be positive, got {v}")
        kw[name] = v
    sizes = tuple(_int(v, "allowed_batch_sizes") for v in msg.get("allowed_batch_sizes", []))
    if sizes:
        if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
            raise ConfigError(f"allowed_batch_sizes must increase strictly, got {list(sizes)}")
        if sizes[-1] != kw.get("max_batch_size", BatchingParameters.max_batch_size):
            raise ConfigError("the last of allowed_batch_sizes must equal max_batch_size")
        kw["allowed_batch_sizes"] = sizes
    return BatchingParameters(**kw)
