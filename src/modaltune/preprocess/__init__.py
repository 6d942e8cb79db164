"""modaltune.preprocess."""
