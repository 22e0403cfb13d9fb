"""Command line: ``gpt-service serve`` (and local ``train`` / ``evaluate``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="gpt-service: serve, fine-tune and evaluate LLMs", no_args_is_help=True)


def _settings(**overrides: object):  # noqa: ANN202 - Settings import is deferred
    from gpt_service.config import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    model: Annotated[str | None, typer.Option(help="model to preload (name)")] = None,
    model_path: Annotated[
        str | None, typer.Option(help="directory or hub id of the model to preload")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="data directory")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | mps")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | float16 | bfloat16")] = None,
    log_level: Annotated[str, typer.Option(help="logging level")] = "info",
) -> None:
    """Start the HTTP server (Swagger UI at /docs)."""
    import uvicorn

    from gpt_service.app import create_app

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = _settings(
        default_model=model,
        default_model_path=model_path,
        data_dir=data_dir,
        device=device,
        dtype=dtype,
        log_level=log_level.upper(),
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
