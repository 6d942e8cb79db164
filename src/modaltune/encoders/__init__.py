"""modaltune.encoders."""
