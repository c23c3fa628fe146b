"""The one exception type users see: its message is a single line naming the culprit."""


class Merge2MixError(Exception):
    """A problem with the user's input (config, data, checkpoint). Printed as one line, exit 1."""


class ConfigError(Merge2MixError):
    pass


class DataError(Merge2MixError):
    pass


class CheckpointError(Merge2MixError):
    pass
