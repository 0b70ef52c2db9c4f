"""Errors the command line reports as one line."""


class ConfigError(ValueError):
    """A bad configuration value; the CLI prints it as one line and exits 2."""
