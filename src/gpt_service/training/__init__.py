"""LoRA fine-tuning jobs: manager, worker, datasets."""
