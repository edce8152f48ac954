"""Settings errors as one line that names each field and its problem, never its value.

pydantic's own message quotes every rejected input (``input_value='supersecret123'``), and
a value is a secret whenever its name is mistyped: ``DETECTOR_KAFKA__SASL_PASWORD`` is not a
``SecretStr`` field, it is an unknown one. So no value is ever shown, whatever the field.
The detector, producer and training CLIs all print settings errors through
:func:`describe_settings_error`.

Examples:
    >>> from pydantic import BaseModel, ConfigDict
    >>> class Kafka(BaseModel):
    ...     model_config = ConfigDict(extra="forbid")
    ...     sasl_password: str | None = None
    >>> try:
    ...     Kafka(sasl_pasword="supersecret123")
    ... except ValueError as exc:
    ...     print(describe_settings_error(exc, Kafka))
    sasl_pasword: unknown setting (did you mean sasl_password?)
"""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel, ValidationError

__all__ = ["describe_settings_error"]

_MIN_REDACTED = 3  # shorter inputs ("1", "ab") are too common in messages to hide


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "settings"


def _nested_model(model: type[BaseModel] | None, name: int | str) -> type[BaseModel] | None:
    """The settings group (a pydantic model) that field ``name`` of ``model`` holds, if any."""
    field = model.model_fields.get(str(name)) if model is not None else None
    if field is None:
        return None
    for candidate in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _unknown(loc: tuple[int | str, ...], model: type[BaseModel] | None) -> str:
    """ "unknown setting", with the closest field names of its group when there are any."""
    for part in loc[:-1]:
        model = _nested_model(model, part)
    names = list(model.model_fields) if model is not None else []
    close = difflib.get_close_matches(str(loc[-1]), names, n=2) if loc else []
    return "unknown setting" + (f" (did you mean {' or '.join(close)}?)" if close else "")


def describe_settings_error(exc: Exception, model: type[BaseModel] | None = None) -> str:
    """One line for a settings error: each field and what is wrong with it, no value.

    Args:
        exc: a pydantic ``ValidationError``, a pydantic-settings ``SettingsError`` (a value
            from the environment that cannot be parsed: its message names only the field),
            or a ``ValueError`` the settings code raised on purpose.
        model: the settings class, to suggest the field an unknown name was meant to be.
    """
    if not isinstance(exc, ValidationError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    problems = []
    for error in exc.errors(include_url=False, include_input=True):
        if error["type"] == "extra_forbidden":
            msg = _unknown(error["loc"], model)
        else:
            msg = error["msg"]
            raw = error.get("input")
            # Messages from validators are ours and name no value; this is the safety net.
            if isinstance(raw, str | int | float) and len(str(raw)) >= _MIN_REDACTED:
                msg = msg.replace(str(raw), "<redacted>")
        problems.append(f"{_location(error['loc'])}: {msg}")
    return "; ".join(problems).replace("\n", " ")
