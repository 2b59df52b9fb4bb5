"""Configuration: defaults that work with no file, a YAML file, then environment.

Precedence (last wins): built-in defaults, the YAML file (``--config`` or
``SLIPWAY_CONFIG``), environment variables ``SLIPWAY_<SECTION>__<KEY>`` (and
``SLIPWAY_DATA_DIR`` / ``SLIPWAY_ADMIN_PASSWORD`` as short forms).
"""
from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml
from pydantic import TypeAdapter, ValidationError


class ConfigError(ValueError):
    """A setting is unknown or has a value of the wrong kind."""


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    # The URL clients use to reach Slipway (token realm, links in messages).
    # Empty: derived per request from Host / X-Forwarded-* headers.
    public_url: str = ""
    # HTTP processes sharing the listening socket; 0 means one per CPU core.
    processes: int = 1
    tls_cert: str = ""
    tls_key: str = ""
    # Make (once) and use a self-signed certificate in the data directory.
    tls_self_signed: bool = False
    # Proxies whose X-Forwarded-For / X-Real-IP are believed for the client IP.
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # Run the background process: scheduled jobs, notification delivery and build workers
    # (off for API-only nodes).
    workers: bool = True
    # Its CPU niceness (0-19, inherited by buildah): requests first, background work when there is room.
    background_nice: int = 10
    # One log line per request (tornado.access).
    access_log: bool = True
    # Answer manifest GET/HEAD and GET /v2/ on the registry's read path (registry/readpath.py), below
    # tornado's RequestHandler; false: every request goes through the regular handlers (same answers).
    read_path: bool = True


@dataclass
class DatabaseConfig:
    # Empty: SQLite at <data_dir>/slipway.db. PostgreSQL: postgresql://u:p@host/db
    url: str = ""


@dataclass
class StorageConfig:
    driver: Literal["filesystem", "s3"] = "filesystem"
    path: str = ""  # filesystem root; empty: <data_dir>/storage
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    # Answer blob GETs with a redirect to a presigned URL instead of proxying.
    s3_redirect: bool = True
    s3_redirect_ttl: int = 600


@dataclass
class AuthConfig:
    # Signs registry tokens and encrypts secrets at rest. Empty: generated once
    # into <data_dir>/secret.key. Scale-out nodes must share one value.
    secret_key: str = ""
    token_ttl: int = 3600
    admin_user: str = "admin"
    admin_password: str = ""
    user_signup: bool = False
    robots_enabled: bool = True
    # How long a web interface session lasts after sign-in (seconds).
    session_ttl: int = 7 * 86400


@dataclass
class RegistryConfig:
    max_manifest_bytes: int = 4 * 1024 * 1024
    # Uploads untouched for this long are discarded by the cleanup job.
    stale_upload_hours: int = 24


@dataclass
class TagsConfig:
    # An expiry set through the API is clamped into this range (seconds from now).
    min_expiration_seconds: int = 60
    max_expiration_seconds: int = 2 * 365 * 86400


@dataclass
class GcConfig:
    interval_seconds: int = 3600
    # Uploads, blob links and manifests younger than this are never collected (Quay: 1 h),
    # so a push in progress (blobs first, manifest last) is safe.
    grace_seconds: int = 3600
    batch: int = 500


@dataclass
class NetworkConfig:
    # Outgoing requests (archive_url, webhooks, git clones over http) to
    # loopback, private and link-local addresses are refused unless allowed.
    allow_private: bool = False
    allowlist: list[str] = field(default_factory=list)  # CIDRs or host names allowed anyway


@dataclass
class BuildsConfig:
    backend: Literal["buildah", "docker"] = "buildah"
    # Build worker threads `slipway serve` runs in-process (0: none; use `slipway worker`).
    workers: int = 1
    # Builds running at once across all workers of this database.
    max_concurrent: int = 2
    # Builds waiting per namespace before new ones are refused (HTTP 429).
    max_queued_per_namespace: int = 25
    timeout_seconds: int = 7200
    max_log_bytes: int = 5 * 1024 * 1024
    max_context_bytes: int = 512 * 1024 * 1024
    retries: int = 3
    retry_delay_seconds: int = 30
    # A worker that has not renewed its lease for this long is presumed dead.
    lease_seconds: int = 30
    # How workers reach this Slipway's registry; empty: http(s)://127.0.0.1:<server.port>.
    registry_url: str = ""
    # buildah's storage (layers, cached steps) and the builds' work directories; empty: a directory of this
    # Slipway's in the build user's home (/var/lib/slipway-build/slipway-<hash>), or <data_dir>/buildah
    # when Slipway does not run as root. The build user must be able to reach it.
    storage_root: str = ""
    # buildah runs as this unprivileged user (with a range in /etc/subuid and /etc/subgid), never as root.
    user: str = "slipway-build"
    # How RUN steps are isolated: chroot (works everywhere) or oci (runc/crun; better on cgroup v2 hosts).
    isolation: Literal["chroot", "oci"] = "chroot"
    # With isolation oci: the OCI runtime (runc works rootless on cgroup v1/hybrid hosts; crun needs cgroup v2).
    oci_runtime: str = "runc"
    # auto: the first of overlay, fuse-overlayfs, vfs that works here (probed at worker start).
    storage_driver: Literal["auto", "overlay", "fuse-overlayfs", "vfs"] = "auto"
    # What RUN steps reach: public (the internet, never the host's loopback or private ranges unless
    # network.allow_private / network.allowlist) or none (loopback only).
    network: Literal["public", "none"] = "public"
    # Per-build limits (0: none). Memory and processes are capped through a cgroup; CPU time and the
    # growth of the build storage's filesystem are watched, and the build is stopped past them.
    max_memory_mb: int = 4096
    max_processes: int = 4096
    max_cpu_seconds: int = 3600
    max_disk_mb: int = 20480
    # Commit every step as a layer (buildah --layers), so repeated builds reuse them. On vfs
    # storage this costs a copy of the filesystem per step (see docs/PERFORMANCE.md).
    layers: bool = True
    # With layers: push and reuse them in <repository>/buildcache, so any worker reuses them.
    layer_cache: bool = True
    # For the docker backend: the engine's address (unix:///var/run/docker.sock, tcp://...).
    docker_host: str = ""
    # Let readers (not only writers) see build logs.
    readers_see_logs: bool = False


@dataclass
class TriggersConfig:
    # Successive failed builds after which a trigger disables itself (Quay's numbers).
    max_user_errors: int = 100
    max_internal_errors: int = 5
    # Let triggers clone file:// URLs (a path on the worker's disk): off, as it would expose local files.
    allow_file_urls: bool = False
    # How long a handled webhook delivery (its retry key and its body's hash) is remembered, so a retry or a
    # replay of a captured delivery builds nothing.
    replay_window_seconds: int = 7 * 24 * 3600


@dataclass
class NotificationsConfig:
    # Delays (seconds) before each retry of a failed delivery; Quay retries 4 times, 30 s apart.
    retry_delays: list[int] = field(default_factory=lambda: [30, 30, 30, 30])
    # After this many successive failed attempts a notification stops until it is reset (Quay: 3).
    max_failures: int = 3
    webhook_timeout: int = 10
    # How often tags about to expire are looked for (repo_image_expiry).
    expiry_scan_seconds: int = 300
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_tls: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str = ""
    smtp_password: str = ""
    mail_from: str = "slipway@localhost"


@dataclass
class ScannerConfig:
    # Index every pushed image manifest and match it against the imported advisories.
    enabled: bool = True
    # Advisory feeds imported by the scheduled update (files, directories, zips or http(s) URLs);
    # `slipway scanner update` imports these when given no argument.
    feeds: list[str] = field(default_factory=list)
    update_interval_seconds: int = 6 * 3600
    # A layer (or a whole scan) that inflates to more than this is a decompression bomb: the scan fails.
    max_inflated_mb_per_layer: int = 4096
    max_inflated_mb_per_scan: int = 16384
    # A scan whose process stops renewing its claim is taken again after this.
    lease_seconds: int = 60


@dataclass
class Config:
    data_dir: str = "./slipway-data"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    server: ServerConfig = field(default_factory=ServerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    tags: TagsConfig = field(default_factory=TagsConfig)
    gc: GcConfig = field(default_factory=GcConfig)
    builds: BuildsConfig = field(default_factory=BuildsConfig)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)
    scanner: ScannerConfig = field(default_factory=ScannerConfig)

    # -- derived values ---------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'slipway.db'}"

    @property
    def storage_path(self) -> Path:
        return Path(self.storage.path).resolve() if self.storage.path else self.data_path / "storage"

    @property
    def build_registry_url(self) -> str:
        """How workers reach the registry: ``builds.registry_url``, else this server on loopback, over the
        transport it speaks."""
        scheme = "https" if self.server.tls_cert or self.server.tls_self_signed else "http"
        return (self.builds.registry_url or f"{scheme}://127.0.0.1:{self.server.port}").rstrip("/")

    def secret_key(self) -> str:
        """The server secret; generated and kept in the data directory if unset."""
        if self.auth.secret_key:
            return self.auth.secret_key
        path = self.data_path / "secret.key"
        if not path.exists():
            self.data_path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        self.auth.secret_key = path.read_text().strip()
        return self.auth.secret_key


ENV_PREFIX = "SLIPWAY_"
ENV_ALIASES = {
    "SLIPWAY_DATA_DIR": ("data_dir",),
    "SLIPWAY_ADMIN_PASSWORD": ("auth", "admin_password"),
    "SLIPWAY_DATABASE_URL": ("database", "url"),
    "SLIPWAY_PORT": ("server", "port"),
    "SLIPWAY_LOG_LEVEL": ("log_level",),
}


def load(path: str | None = None, environ: dict | None = None) -> Config:
    """Build the configuration from defaults, an optional YAML file and the environment.

    Every value is read by the declared type of its setting (pydantic validates the sections):
    a string setting keeps its text as given (``0755`` stays ``"0755"``, ``yes`` stays ``"yes"``),
    numbers and booleans are parsed, a choice setting takes one of its listed values, a list
    comes from YAML or a comma-separated environment value. Anything else stops the start with
    the setting's name, what it must be and where the value came from.
    """
    environ = os.environ if environ is None else environ
    data: dict = {}
    sources: dict[tuple, str] = {}
    path = path or environ.get("SLIPWAY_CONFIG")
    if path:
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        try:
            mapping = yaml.load(text, Loader=_TextScalarLoader) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"config file {path} must hold a mapping of settings")
        _read_mapping(data, sources, Config, mapping, ())
    for name, value in environ.items():
        if name in ENV_ALIASES:
            keys = ENV_ALIASES[name]
        elif name.startswith(ENV_PREFIX) and "__" in name:
            keys = tuple(k.lower() for k in name[len(ENV_PREFIX):].split("__"))
        else:
            continue
        kind = _setting_type(keys, name)
        if value == "" and kind is not str and get_origin(kind) is not list:
            continue  # an empty number, switch or choice means "not set"
        if get_origin(kind) is list:
            value = _env_list(value, name)
        _put(data, keys, _choice_case(kind, value))
        sources[keys] = name
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, sources)) from None


class _TextScalarLoader(yaml.SafeLoader):
    """YAML whose scalars stay text (null aside): each setting's declared type decides what they mean."""


for _tag in ("bool", "int", "float", "timestamp"):
    _TextScalarLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", yaml.SafeLoader.construct_scalar)

_ADAPTER = TypeAdapter(Config)


def _setting_type(keys: tuple, where: str) -> Any:
    """The declared type of the setting at ``keys``; unknown names are refused."""
    section: Any = Config
    for key in keys[:-1]:
        kind = get_type_hints(section).get(key)
        if not dataclasses.is_dataclass(kind):
            raise ConfigError(f"unknown setting section '{key}' (from {where})")
        section = kind
    kind = get_type_hints(section).get(keys[-1])
    if kind is None or dataclasses.is_dataclass(kind):
        raise ConfigError(f"unknown setting '{keys[-1]}' (from {where})")
    return kind


def _read_mapping(data: dict, sources: dict, section: type, mapping: dict, prefix: tuple) -> None:
    hints = get_type_hints(section)
    for key, value in mapping.items():
        keys = prefix + (str(key),)
        where = ".".join(keys)
        kind = hints.get(str(key))
        if kind is None:
            raise ConfigError(f"unknown setting '{key}' (from {where})")
        if dataclasses.is_dataclass(kind):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"setting section {where} must be a mapping of settings, got {value!r}")
            _read_mapping(data, sources, kind, value, keys)
            continue
        if value is None:
            if kind is not str:
                continue  # null: the default
            value = ""
        _put(data, keys, _choice_case(kind, value))
        sources[keys] = where


def _env_list(value: str, where: str) -> list:
    """A list from the environment: YAML flow style (``[a, b]``) or comma-separated (``a, b``)."""
    if value.strip().startswith("["):
        try:
            items = yaml.load(value, Loader=_TextScalarLoader)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} is not a valid list: {e}") from None
        return items if isinstance(items, list) else [items]
    return [v.strip() for v in value.split(",") if v.strip()]


def _choice_case(kind: Any, value: Any) -> Any:
    """Choices are lower case; ``STARTTLS`` or ``DEBUG`` mean the same (a misspelling is still refused)."""
    if get_origin(kind) is Literal and isinstance(value, str):
        return value.strip().lower()
    return value


def _put(data: dict, keys: tuple, value: Any) -> None:
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _describe(error: ValidationError, sources: dict) -> str:
    """One line per wrong setting: its name, what it must be, the value given and where it came from."""
    lines = []
    for item in error.errors():
        keys = tuple(str(k) for k in item["loc"] if not isinstance(k, int))
        kind = _setting_type(keys, ".".join(keys))
        if get_origin(kind) is Literal:
            must = "one of " + ", ".join(str(v) for v in get_args(kind))
        elif get_origin(kind) is list:
            element = get_args(kind)[0] if get_args(kind) else str
            must = f"a list of {'whole numbers' if element is int else 'strings'}"
        else:
            must = KIND_WORDS.get(kind, str(kind))
        source = sources.get(keys, ".".join(keys))
        origin = f" (from {source})" if source != ".".join(keys) else ""
        lines.append(f"setting {'.'.join(keys)} must be {must}, got {item['input']!r}{origin}")
    return "; ".join(lines)
