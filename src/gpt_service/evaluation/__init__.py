"""Evaluation metrics (text metrics and perplexity) for gpt-service."""
