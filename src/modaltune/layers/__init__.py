"""modaltune.layers."""
