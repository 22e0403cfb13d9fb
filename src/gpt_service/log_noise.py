"""Silence two messages of our libraries that alarm users for nothing, and only those two.

- transformers' "Token indices sequence length is longer than the specified maximum sequence
  length": logged when a prompt is encoded, before the service refuses it with a clean 400
  (or cuts a training example to ``max_seq_length``), so it never leads to an indexing error.
- transformers' ``is_gradient_checkpointing`` FutureWarning: PEFT reads the deprecated
  property while wrapping the model, once in every training log.

Every other warning of these libraries, and every other message of those loggers, is kept.
"""

from __future__ import annotations

import logging
import warnings

TOKENIZER_LOGGER = "transformers.tokenization_utils_base"
TOO_LONG = "Token indices sequence length is longer than the specified maximum"
GRADIENT_CHECKPOINTING = r"`is_gradient_checkpointing` is deprecated"


class DropMessage(logging.Filter):
    """Drops the records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def silence_known_noise() -> None:
    """Idempotent: called by every entry point (server, CLI, training worker)."""
    logger = logging.getLogger(TOKENIZER_LOGGER)
    if not any(isinstance(f, DropMessage) and f.prefix == TOO_LONG for f in logger.filters):
        logger.addFilter(DropMessage(TOO_LONG))
    warnings.filterwarnings("ignore", message=GRADIENT_CHECKPOINTING, category=FutureWarning)
