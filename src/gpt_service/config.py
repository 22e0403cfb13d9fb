"""One settings object for the whole service (env prefix ``GPT_SERVICE_``, optional ``.env``).

Built once (``Settings()``) and passed to ``create_app``; tests build their own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

PACKAGE_DIR = Path(__file__).resolve().parent
# Set by `gpt-service serve` when it chose the OpenMP wait policy itself (training workers then
# run PASSIVE instead of inheriting the server's spinning).
SERVER_OMP_MARK = "GPTS_SERVER_OMP_DEFAULTS"
DEMO_MODEL_DIR = PACKAGE_DIR / "demo_model"
DEMO_DATA_DIR = PACKAGE_DIR / "demo_data"
DEMO_MODEL_NAME = "demo"


class EngineSettings(BaseModel):
    max_running: int = Field(32, ge=1, description="sequences decoded together per step")
    max_waiting: int = Field(256, ge=1, description="queued requests before 503")
    max_prefill_tokens: int = Field(2048, ge=16, description="prompt tokens prefilled per step")
    # Torch intra-op threads of the serving process; 0: torch's default (one per core). With
    # the short OpenMP spin set by the CLI, 2 threads beat 1 on 2 cores (see cli.main).
    num_threads: int = Field(0, ge=0)
    # Decode steps compiled with torch.compile (CPU): graphs build in the background while the
    # engine serves eagerly, cached under <data_dir>/cache/inductor for the next start.
    compile: bool = Field(True, description="compiled decode steps on CPU")
    # float32 linear layers of more than one row through oneDNN instead of MKL (engine/onednn.py)
    onednn_linear: bool = Field(True, description="oneDNN linear layers on CPU")
    # Local models' CPU weights copied into one block on transparent huge pages
    # (engine/hugepages.py): one-slot decode steps stream them faster.
    huge_pages: bool = Field(True, description="weights on transparent huge pages (CPU)")
    # Weights of local models' linear layers as int8 with a scale per output channel
    # (engine/quantize.py): one-row decode steps read a quarter of float32's bytes.
    # A load request may choose otherwise for its model.
    quantization: Literal["none", "int8"] = Field(
        "none", description="none | int8 (weight-only, per output channel)"
    )


class LimitSettings(BaseModel):
    max_tokens: int = Field(4096, ge=1, description="cap on max_tokens per request")
    max_batch_prompts: int = Field(64, ge=1, description="cap on prompts per /batch request")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_loaded_models: int = Field(4, ge=1)
    min_free_memory_mb: int = Field(512, ge=0, description="refuse a load below this headroom")


class TrainingSettings(BaseModel):
    max_concurrent_jobs: int = Field(1, ge=1)
    # Torch threads per training process; 0: half the cores (split between processes), which
    # leaves the serving engine the other half and avoids oversubscription (on a busy 2-core
    # machine 2 threads made a training step several times slower than 1).
    num_threads: int = Field(0, ge=0)
    # Multi-node jobs: the address the other nodes reach this replica's c10d rendezvous on.
    rendezvous_host: str = "127.0.0.1"
    # A worker that shows no sign of progress (a stage change, a step, an evaluation batch)
    # for this long is taken as hung: its replica stops it and the job fails, resumable from
    # its last checkpoint. 0 turns the check off. Generous: loading a big model or tokenizing
    # a big dataset is one long stage.
    stall_seconds: float = Field(1800.0, ge=0)


class RemoteModelSettings(BaseModel):
    """A model served by a remote OpenAI-compatible engine, registered at start-up."""

    name: str = Field(..., min_length=1)
    base_url: str | list[str] = Field(..., description="one URL (ending in /v1) or replicas")
    remote_model: str = Field(..., min_length=1, description="the upstream's model id")
    api_key: str | None = None
    model_path: str | None = Field(None, description="local copy of its weights (training)")


class RemoteSettings(BaseModel):
    # URL prefixes a ``POST /models/load`` may point a remote model at (the server calls them).
    allowed_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    models: list[RemoteModelSettings] = Field(default_factory=list)
    read_timeout_seconds: float = Field(300.0, gt=0, description="longest upstream silence")
    connect_timeout_seconds: float = Field(5.0, gt=0)
    probe_interval_seconds: float = Field(2.0, gt=0, description="re-probe of a down replica")

    @field_validator("allowed_urls", mode="before")
    @classmethod
    def _comma_or_json(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GPT_SERVICE_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    environment: Literal["dev", "prod"] = "dev"
    data_dir: Path = Path("data")
    # Read-only directories that model_path / lora_adapter may also point into.
    model_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    default_model: str | None = DEMO_MODEL_NAME
    default_model_path: str | None = None
    # Start answering only once the default model is loaded (else: load in the background
    # and report it through /ready).
    wait_for_default_model: bool = True
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False
    ollama_base_url: str = "http://localhost:11434"
    ollama_timeout_seconds: float = 300.0  # read timeout: longest silence of the upstream
    ollama_connect_timeout_seconds: float = 5.0
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allow_open_prod: bool = False
    docs_open: bool = True  # /docs and /openapi.json reachable without a key
    log_level: str = "INFO"
    shutdown_grace_seconds: float = 10.0
    # The job store: SQLite in the data directory by default; postgresql+psycopg://user:pass@
    # host:5432/db for several replicas (every replica must name the same database).
    database_url: str | None = None
    # PostgreSQL: seconds one connection attempt may take (a URL's own ?connect_timeout= wins).
    database_connect_timeout_seconds: int = Field(10, ge=1, le=600)
    replica_name: str | None = None  # default: the host name; shown in /health and job status
    # A running job's owner renews its lease every third of this; a dead replica's jobs
    # become interrupted after about 1.3x this long.
    job_lease_seconds: float = Field(30.0, ge=1.0, le=3600.0)

    engine: EngineSettings = Field(default_factory=EngineSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    remote: RemoteSettings = Field(default_factory=RemoteSettings)

    @field_validator("api_keys", "model_dirs", mode="before")
    @classmethod
    def _list_from_text(cls, value: object) -> object:
        return parse_list(value)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str | None) -> str | None:
        """A URL SQLAlchemy parses, for SQLite or PostgreSQL: anything else would end
        start-up with a traceback from the store."""
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(value).get_backend_name()
        except ArgumentError:
            raise ValueError("not a database URL") from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"'{backend}' is not supported: postgresql+psycopg://user:pass@host:5432/db, "
                "or unset for SQLite"
            )
        return value

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gpt_service.sqlite3"

    @property
    def store_url(self) -> str:
        """The job store's URL; PostgreSQL's carries ``connect_timeout`` (workers get it too)."""
        if self.database_url is None:
            return f"sqlite:///{self.db_path.resolve()}"
        from sqlalchemy.engine import make_url

        url = make_url(self.database_url)
        if url.get_backend_name() != "postgresql" or "connect_timeout" in url.query:
            return self.database_url
        timeout = {"connect_timeout": str(self.database_connect_timeout_seconds)}
        return url.update_query_dict(timeout).render_as_string(hide_password=False)

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.models_dir, self.datasets_dir):
            path.mkdir(parents=True, exist_ok=True)


class InvalidSettings(RuntimeError):
    """A setting that parses but cannot be used; the message names the variable."""


def check_startup(settings: Settings) -> None:
    if settings.environment == "prod" and not settings.api_keys and not settings.allow_open_prod:
        raise InvalidSettings(
            "invalid setting GPT_SERVICE_API_KEYS: refusing to start in the prod environment "
            "without API keys (set it, or GPT_SERVICE_ALLOW_OPEN_PROD=true to run open on purpose)"
        )


def parse_list(value: object) -> object:
    """A list setting from the environment: a JSON list, a comma-separated list or one value
    (``GPT_SERVICE_API_KEYS=mykey``, as vLLM's ``--api-key`` takes it)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not a valid JSON list ({exc})") from None
    return [part.strip() for part in text.split(",") if part.strip()]


def env_name(loc: tuple[object, ...]) -> str:
    """The environment variable a settings field is read from (nested with ``__``)."""
    return "GPT_SERVICE_" + "__".join(str(p) for p in loc if not isinstance(p, int)).upper()


def describe_settings_error(exc: ValidationError | SettingsError) -> str:
    """One readable line naming the variable(s), for start-up errors (no traceback)."""
    if isinstance(exc, SettingsError):
        # pydantic-settings: 'error parsing value for field "x" from source "..."'
        field = str(exc).split('"')[1] if '"' in str(exc) else ""
        name = env_name(tuple(field.split("__"))) if field else "a GPT_SERVICE_ variable"
        return f"invalid setting {name}: {exc.__cause__ or exc}"
    parts = []
    for err in exc.errors():
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{env_name(tuple(err.get('loc', ())))}: {message}{shown}")
    return "invalid setting " + "; ".join(parts)
