"""gpt-service: a self-hosted LLM service (serve, fine-tune and evaluate HF models)."""

__version__ = "1.0.0"
