"""modaltune.heads."""
