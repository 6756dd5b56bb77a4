"""Warren's configuration: one pydantic-settings class, read once by each entry point."""

import base64
import binascii
import importlib.util
import json
from typing import Annotated, Literal, NamedTuple
from urllib.parse import urlsplit

import pika
from cryptography.fernet import Fernet
from pydantic import Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

RetryStrategy = Literal["exponential", "linear", "fixed"]
#: The longest retention a `WARREN_RETAIN_*_DAYS` may set: a century.
MAX_RETAIN_DAYS = 36_525
DAY = 86_400
#: Counts and sizes (processes, threads, a port) are positive and bounded; durations are
#: finite and bounded too, since a NaN or an infinity set by mistake would turn a timer into a
#: busy loop or a wait that never ends (and `NaN > 0` is false, so it passes a lone check).
#: The most processes or threads a setting may ask for.
MAX_COUNT = 1024
Count = Annotated[int, Field(ge=1, le=MAX_COUNT)]
MAX_PORT = 65535


class Settings(BaseSettings):
    """Every knob Warren has, from `WARREN_*` environment variables.

    The defaults fit a developer machine with RabbitMQ and PostgreSQL on 127.0.0.1, so nothing
    needs setting to start. Lists are comma-separated in the environment.
    """

    # Errors never quote a value: several settings are secrets (tokens, keys).
    model_config = SettingsConfigDict(
        env_prefix="WARREN_", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/warren"
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    queue_prefix: str = Field(default="warren", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=MAX_PORT)
    api_workers: Count = 2
    api_threads: Count = 8
    # Bearer tokens: `token` (full access) or `name:token:scope`; see `parse_api_token`.
    api_tokens: Annotated[list[str], NoDecode] = []
    max_payload_bytes: int = Field(default=131072, ge=1024, le=64 * 1024 * 1024)
    # The largest result a handler may return, as JSON; PostgreSQL's own bound is 256 MB.
    max_result_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=128 * 1024 * 1024)

    smtp_url: str = "smtp://127.0.0.1:1025"
    # Where `warren run`'s development mail catcher keeps what it caught (`warren mail`).
    dev_mail_dir: str = ".warren/mail"
    # Where job types write the files they make (a report), one per job: see service.artifacts.
    files_dir: str = ".warren/files"
    webhook_secret: str | None = None
    # generate-content's OpenAI-compatible chat-completions endpoint (Ollama's, by default).
    llm_url: str = "http://127.0.0.1:11434/v1"
    llm_api_key: SecretStr | None = None
    llm_model: str = "llama3.2"
    # generate-embedding and /embeddings/search: a model on this machine, or an
    # OpenAI-compatible /embeddings endpoint (OpenAI, Ollama, vLLM, TEI).
    embeddings_backend: Literal["local", "openai"] = "local"
    embeddings_url: str = "http://127.0.0.1:11434/v1"
    embeddings_api_key: SecretStr | None = None
    embeddings_model: str = "all-MiniLM-L6-v2"
    secret_key: SecretStr | None = None
    # The dashboard's CSRF key when neither `secret_key` nor `api_tokens` is set: `warren api`
    # draws one per start for its workers to share (see api.ui.access).
    ui_csrf_key: SecretStr | None = None
    # Per-destination webhook secrets: "host" or "name@host" (a payload's secretRef) -> secret.
    webhook_secrets: Annotated[dict[str, str], NoDecode] = {}
    # Networks that URL-taking job types may reach though not public (see service.netguard).
    allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = []

    # Log lines as JSON or text; unset: text when stderr is a terminal, JSON otherwise.
    log_format: Literal["json", "text"] | None = None
    # One access line per API request (`api.requestids`). Off where the proxy in front logs
    # requests: under gunicorn the line costs about as much CPU as the request's own insert.
    access_log: bool = True

    job_modules: Annotated[list[str], NoDecode] = ["actors"]
    worker_processes: Count = 2
    worker_threads: Count = 8
    # Messages a worker process holds per thread (Celery's `worker_prefetch_multiplier`). Its
    # jobs are claimed at delivery, so up to (prefetch - 1) per thread wait as `processing`;
    # a worker that dies gives them back unspent (no start mark). 1 suits long jobs, where a
    # waiting job should rather go to an idle worker.
    worker_prefetch: int = Field(default=8, ge=1, le=100)

    delay_horizon_seconds: float = Field(default=600.0, gt=0, le=DAY)
    lease_seconds: float = Field(default=30.0, ge=1, le=DAY)
    dispatch_interval_seconds: float = Field(default=1.0, ge=0.01, le=3600)
    stranded_after_seconds: float = Field(default=5.0, ge=0, le=DAY)
    republish_after_seconds: float = Field(default=3600.0, gt=0, le=7 * DAY)

    # How long finished work is kept before the scheduler deletes it (see service.retention);
    # at most a century, past which PostgreSQL's dates would overflow computing the cutoff.
    retain_completed_days: float = Field(default=7.0, gt=0, le=MAX_RETAIN_DAYS)
    retain_cancelled_days: float = Field(default=7.0, gt=0, le=MAX_RETAIN_DAYS)
    retain_failed_days: float = Field(default=30.0, gt=0, le=MAX_RETAIN_DAYS)
    retain_dead_letter_days: float = Field(default=30.0, gt=0, le=MAX_RETAIN_DAYS)
    prune_interval_seconds: float = Field(default=60.0, ge=1, le=DAY)

    retry_strategy: RetryStrategy = "exponential"
    retry_base_seconds: float = Field(default=5.0, ge=0, le=7 * DAY)
    retry_max_seconds: float = Field(default=3600.0, ge=0, le=7 * DAY)
    retry_jitter: float = Field(default=0.1, ge=0, le=1)

    @field_validator("database_url")
    @classmethod
    def _postgresql(cls, url: str) -> str:
        """A PostgreSQL URL, driven by psycopg 3 (the one driver installed): `postgresql://`
        and `postgres://` are taken to mean it; any other database is refused at startup."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError("not a database URL (postgresql://user@host:port/name)") from None
        backend, _, driver = parsed.drivername.partition("+")
        if backend not in ("postgresql", "postgres"):
            raise ValueError("Warren keeps its jobs in PostgreSQL: a postgresql:// URL")
        if driver not in ("psycopg", ""):
            raise ValueError("Warren drives PostgreSQL with psycopg 3: postgresql+psycopg://")
        if parsed.drivername == "postgresql+psycopg":
            return url
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)

    @field_validator("broker_url")
    @classmethod
    def _amqp(cls, url: str) -> str:
        """An AMQP URL as pika reads it, refused at startup rather than at the first publish."""
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise ValueError("not an amqp:// or amqps:// URL")
        try:
            pika.URLParameters(url)
        except Exception as exc:  # pika raises what its parsing meets: ValueError, IndexError
            raise ValueError(f"not an AMQP URL pika can use ({exc})") from None
        return url

    @field_validator("api_tokens", "job_modules", "allowed_networks", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("job_modules")
    @classmethod
    def _importable(cls, modules: list[str]) -> list[str]:
        """Each job module exists (a missing one is refused at startup, naming it); what it
        does when imported is left to the registry, whose errors are the module's own."""
        for name in modules:
            try:
                found = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                found = None
            if found is None:
                raise ValueError(f"no module named {name!r} (is it on PYTHONPATH?)")
        return modules

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, entries: list[str]) -> list[str]:
        """Refuse a malformed entry, an unknown scope, or a name or token given twice at
        startup; the message names the entry, never its secret."""
        parsed = [parse_api_token(entry, position) for position, entry in enumerate(entries, 1)]
        for what in ("name", "token"):
            values = [getattr(t, what) for t in parsed]
            twice = [t.name for t in parsed if values.count(getattr(t, what)) > 1]
            if twice:
                raise ValueError(f"WARREN_API_TOKENS: entries {', '.join(twice)} share a {what}")
        return entries

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _parse_secrets(cls, value: object) -> object:
        """`{"host": "secret"}` as JSON, or `host=secret,name@host2=secret2`: a secret may end
        in base64's `=`, so each entry is split at its first `=` only."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("{"):
            return json.loads(value)
        entries = (part.strip().partition("=") for part in value.split(",") if part.strip())
        return {key.strip(): secret.strip() for key, _, secret in entries}

    @field_validator("webhook_secrets")
    @classmethod
    def _check_secrets(cls, secrets: dict[str, str]) -> dict[str, str]:
        """Keys are matched against URL hosts, which are lower case; refuse what could never
        match or never sign, at startup rather than at the first delivery."""
        checked: dict[str, str] = {}
        for key, secret in secrets.items():
            name, at, host = key.strip().lower().rpartition("@")
            if not host or (at and not name) or "@" in name:
                raise ValueError(f"{key!r} is not a host or name@host")
            checked[f"{name}@{host}" if name else host] = _webhook_secret(secret)
        return checked

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            try:
                Fernet(key.get_secret_value().encode())
            except ValueError:
                raise ValueError(
                    "WARREN_SECRET_KEY must be a Fernet key: 32 url-safe base64-encoded bytes"
                    " (make one with `warren secret-key`)"
                ) from None
        return key

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker renews its leases, and every worker and scheduler says it is
        alive: a third of a lease, so two beats can fail before a lease runs out."""
        return max(self.lease_seconds / 3, 0.2)

    @property
    def sealing_key(self) -> str | None:
        """`secret_key` in clear, for `service.sealing`."""
        return self.secret_key.get_secret_value() if self.secret_key else None

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, secret: str | None) -> str | None:
        return _webhook_secret(secret) if secret else None


#: The scopes a `name:token:scope` entry may have, weakest first (see api/auth.py).
TOKEN_SCOPES = ("read", "write", "admin")


class ApiToken(NamedTuple):
    """One `WARREN_API_TOKENS` entry: a bare token is named by its position (`#1`) and has
    the `admin` scope, the full access tokens had before scopes existed."""

    name: str
    token: str
    scope: str


def parse_api_token(entry: str, position: int) -> ApiToken:
    """`token` or `name:token:scope` (the token may itself contain `:`). A `ValueError` names
    the entry by its name or position and never quotes the secret."""
    if ":" not in entry:
        return ApiToken(f"#{position}", entry, "admin")
    name, _, rest = entry.partition(":")
    token, colon, scope = rest.rpartition(":")
    label = f"WARREN_API_TOKENS entry {position}"
    if not colon or not name.strip() or not token:
        raise ValueError(f"{label} is neither a bare token nor name:token:scope")
    if scope not in TOKEN_SCOPES:
        raise ValueError(
            f"{label} ({name.strip()!r}) has an unknown scope; scopes are {', '.join(TOKEN_SCOPES)}"
        )
    return ApiToken(name.strip(), token, scope)


def _webhook_secret(secret: str) -> str:
    """A webhook secret: `whsec_<base64>` (Standard Webhooks; the key is the decoded bytes),
    or any other non-empty text, used as it is."""
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    if secret.startswith("whsec_"):
        try:
            if not base64.b64decode(secret.removeprefix("whsec_"), validate=True):
                raise ValueError("empty key")
        except (binascii.Error, ValueError):
            raise ValueError(
                "a whsec_ secret must be whsec_ followed by non-empty base64"
            ) from None
    return secret
