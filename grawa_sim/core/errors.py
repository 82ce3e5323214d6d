"""The two user-facing exceptions, in a module with no imports so that every layer can raise them."""


class ConfigError(ValueError):
    """Invalid user input; the message reads '<field>: <why> (got <value>)'."""


class ConfigWarning(UserWarning):
    """A legitimate combination in which a field has no effect; the message names the field."""
