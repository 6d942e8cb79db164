"""modaltune.encoders.slide."""
