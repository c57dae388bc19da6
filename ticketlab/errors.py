"""User-facing errors: the CLI prints them as one line and exits non-zero."""


class TicketlabError(Exception):
    """An error caused by the user's input (config, data, paths); shown without a traceback."""


class ConfigError(TicketlabError):
    """A configuration value is missing, unknown or out of range."""


class DataError(TicketlabError):
    """A dataset is missing, corrupt or cannot be fetched."""


class IntegrityError(TicketlabError):
    """A run-directory file is damaged: it does not parse, or its content differs from its recorded sha256."""


class RunLockedError(TicketlabError):
    """Another process is training into the same run directory."""
