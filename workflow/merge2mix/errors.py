"""The one exception type users see: its message is a single line naming the culprit."""


class Merge2MixError(Exception):
    """A problem with the user's input (config, data, checkpoint). Printed as one line, exit 1."""


class ConfigError(Merge2MixError):
    pass


class DataError(Merge2MixError):
    pass


class CheckpointError(Merge2MixError):
    pass


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (the class name when it has none), for one-line errors."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__
