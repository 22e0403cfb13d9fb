"""Persistence of training jobs and evaluation results (SQLite by default)."""
