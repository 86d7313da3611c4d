"""Training support: checkpoints, evaluation metrics and run logs."""
