"""The bundled corpus (`--data sample`): a small French grammar rendered in both languages."""
