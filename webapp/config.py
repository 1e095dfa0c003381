"""Settings, read from the environment in one place (12-factor), with laptop defaults."""
import base64
import logging
import os
import re
import secrets

from webapp import logs

log = logging.getLogger(__name__)

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


def database_url(raw, instance_path):
    """Normalise DATABASE_URL: `mysql://` means PyMySQL; unset means a SQLite file in instance/."""
    if not raw:
        return "sqlite:///" + os.path.join(instance_path, "livegen.sqlite3")
    if raw.startswith("mysql://"):
        return "mysql+pymysql://" + raw[len("mysql://"):]
    return raw


def ollama_url(env):
    """OLLAMA_URL, else OLLAMA_HOST parsed as Ollama's envconfig.Host does (OLLAMA.md §5)."""
    if env.get("OLLAMA_URL"):
        return env["OLLAMA_URL"].rstrip("/")
    value = env.get("OLLAMA_HOST", "").strip()
    if not value:
        return DEFAULT_OLLAMA_URL
    scheme, sep, hostport = value.partition("://")
    if not sep:
        scheme, hostport, default_port = "http", value, "11434"
    else:
        default_port = {"http": "80", "https": "443"}.get(scheme, "11434")
    hostport, slash, path = hostport.partition("/")
    host, port = _split_host_port(hostport)
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal needs brackets in a URL
    return f"{scheme}://{host}:{port or default_port}" + (slash + path).rstrip("/")


def _split_host_port(hostport):
    """('host', 'port') from 'host:port', '[v6]:port', 'host' or '[v6]' (port '' when absent)."""
    match = re.fullmatch(r"\[(?P<v6>[^\]]*)\](?::(?P<p6>\d*))?|(?P<h>[^:]*)(?::(?P<p>\d*))?", hostport)
    if not match:  # a bare IPv6 address without brackets
        return hostport, ""
    return (match["v6"] if match["v6"] is not None else match["h"]), (match["p6"] or match["p"] or "")


def ensure_secret_key(config):
    """A random key when none is set, said loudly: forms break across restarts and processes."""
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = secrets.token_urlsafe(32)
        log.warning("SECRET_KEY is not set: using a random key, so sessions and forms "
                    "break on every restart and differ between processes. Set SECRET_KEY.")


class SettingError(ValueError):
    """A setting whose value cannot be used; the message names it and what it got."""


def _number(env, name, default, kind=float):
    raw = env.get(name, default)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        words = "a whole number" if kind is int else "a number"
        raise SettingError(f"{name} must be {words}, got {raw!r}") from None


def _float(env, name, default):
    return _number(env, name, default)


def _int(env, name, default):
    return _number(env, name, default, int)


def _positive(env, name, default):
    value = _float(env, name, default)
    if value <= 0:
        raise SettingError(f"{name} must be a number above 0, got {env.get(name, default)!r}")
    return value


def _delays(env, name, default):
    raw = env.get(name, default)
    try:
        delays = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        delays = ()
    if not delays or min(delays) < 0:
        raise SettingError(f"{name} must be seconds separated by commas, such as 5,300,1800; got {raw!r}")
    return delays


def _origins(raw):
    """'https://a.example, https://b.example' to a set of origins, each as a browser sends it."""
    origins = {part.strip().rstrip("/").lower() for part in raw.split(",") if part.strip()}
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
            raise SettingError(f"CORS_ORIGINS must list origins such as https://app.example, got {origin!r}")
    return frozenset(origins)


def webhook_secret(env):
    """WEBHOOK_SECRET as Standard Webhooks writes it (whsec_ and base64), or None."""
    raw = env.get("WEBHOOK_SECRET") or None
    if raw is None:
        return None
    try:
        key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if len(key) < 24:
        raise SettingError("WEBHOOK_SECRET must be whsec_ followed by the base64 of 24 or more random bytes; "
                           "see the README's Webhooks section for a command that makes one")
    return raw


def _port(env, name):
    value = _int(env, name, 0)
    if not 0 <= value <= 65535:
        raise SettingError(f"{name} must be a port number (1 to 65535; 0 for none), got {env.get(name)!r}")
    return value


def log_level(env):
    level = env.get("LOG_LEVEL", "INFO").upper()
    if logs.level_problem(level):
        raise SettingError(logs.level_problem(level))
    return level


def from_env(env, instance_path):
    """Build the config mapping from an environment mapping."""
    return {
        "SECRET_KEY": env.get("SECRET_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": database_url(env.get("DATABASE_URL"), instance_path),
        "OLLAMA_URL": ollama_url(env),
        "OLLAMA_SIMULATED": env.get("LIVEGEN_SIMULATOR", "") == "1",
        "DEFAULT_MODEL": env.get("DEFAULT_MODEL", "llama3.2"),
        "WORKER_CONCURRENCY": _int(env, "WORKER_CONCURRENCY", 4),
        "PROGRESS_INTERVAL": _float(env, "PROGRESS_INTERVAL", 0.5),
        "SSE_POLL_INTERVAL": _float(env, "SSE_POLL_INTERVAL", 0.2),
        "SSE_MAX_DURATION": _float(env, "SSE_MAX_DURATION", 600),
        "API_TOKEN": env.get("API_TOKEN") or None,
        "RATE_LIMIT_PER_MINUTE": _int(env, "RATE_LIMIT_PER_MINUTE", 60),
        "MAX_QUEUED_PER_OWNER": _int(env, "MAX_QUEUED_PER_OWNER", 1000),  # 0: no cap
        "MAX_QUEUED_BATCH_ITEMS": _int(env, "MAX_QUEUED_BATCH_ITEMS", 50_000),  # 0: no cap
        "PRIVATE_JOBS": env.get("PRIVATE_JOBS", "") == "1",  # reads owner-only, not by link
        "JOB_RETENTION_DAYS": _float(env, "JOB_RETENTION_DAYS", 0),  # 0: keep every job
        "PROXY_HOPS": _int(env, "PROXY_HOPS", 0),
        "MAX_ATTEMPTS": _int(env, "MAX_ATTEMPTS", 3),
        "LEASE_SECONDS": _float(env, "LEASE_SECONDS", 30),
        "SHUTDOWN_GRACE": _float(env, "SHUTDOWN_GRACE", 20),
        "DB_POOL_SIZE": _int(env, "DB_POOL_SIZE", 10),
        "DB_POOL_TIMEOUT": _positive(env, "DB_POOL_TIMEOUT", 10),
        "DB_CONNECT_TIMEOUT": _positive(env, "DB_CONNECT_TIMEOUT", 5),
        "DB_READ_TIMEOUT": _positive(env, "DB_READ_TIMEOUT", 10),
        "DB_WRITE_TIMEOUT": _positive(env, "DB_WRITE_TIMEOUT", 10),
        "SSE_PING_INTERVAL": _float(env, "SSE_PING_INTERVAL", 15),
        "LOG_LEVEL": log_level(env),
        # /metrics (docs/metrics.md): with a token set, a scrape must send `Authorization: Bearer <token>`;
        # the worker's own figures are served on WORKER_METRICS_PORT (0: not served).
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        "WORKER_METRICS_PORT": _port(env, "WORKER_METRICS_PORT"),
        # Webhooks (webapp/webhooks): the Standard Webhooks signing secret (whsec_ + base64); none
        # set: a create that asks for a webhook is refused, as nothing could be signed.
        "WEBHOOK_SECRET": webhook_secret(env),
        "WEBHOOK_ALLOW_HTTP": env.get("WEBHOOK_ALLOW_HTTP", "") == "1",
        # Loopback, private, link-local and cloud-metadata targets: refused unless this is 1.
        "WEBHOOK_ALLOW_PRIVATE": env.get("WEBHOOK_ALLOW_PRIVATE", "") == "1",
        "WEBHOOK_TIMEOUT": _positive(env, "WEBHOOK_TIMEOUT", 10),
        # Seconds before each retry: Standard Webhooks' schedule (about 27 hours in all).
        "WEBHOOK_RETRY_DELAYS": _delays(env, "WEBHOOK_RETRY_DELAYS", "5,300,1800,7200,18000,36000,36000"),
        # Days a settled delivery (its body a whole text) is kept for the job's page and the API.
        "WEBHOOK_KEEP_DAYS": _positive(env, "WEBHOOK_KEEP_DAYS", 7),
        # Origins whose pages may embed the progress card (static/embed.js): comma-separated.
        "CORS_ORIGINS": _origins(env.get("CORS_ORIGINS", "")),
        "OLLAMA_READ_TIMEOUT": _float(env, "OLLAMA_READ_TIMEOUT", 300),
        # A prompt may be 32,000 characters; JSON escapes can make that ~6x in bytes.
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # A batch's items (up to 10,000 prompts), as JSON, JSONL or CSV.
        "MAX_BATCH_BYTES": _int(env, "MAX_BATCH_BYTES", 16 * 1024 * 1024),
        # Seconds a request body may stop arriving before the request is dropped (408).
        "REQUEST_BODY_TIMEOUT": _float(env, "REQUEST_BODY_TIMEOUT", 10),
        # Flask answers OPTIONS with an empty 200 page on every route; without CORS there is
        # nothing to say to a preflight, so OPTIONS is a 405 like any other unknown method.
        "PROVIDE_AUTOMATIC_OPTIONS": False,
    }
