"""modaltune.evaluation."""
