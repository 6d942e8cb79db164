"""modaltune.training."""
