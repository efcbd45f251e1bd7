"""The base of a process's tuning options: a pydantic-settings model read from
``CAPSTREAM_<PART>_*`` variables (and ``.env``), overridden by what the caller passes.

Defaults and bounds are written once, in the model (``Field(default, ge=..., le=...)``); the
CLI passes only the options given on its command line. Precedence: arguments, then the
environment, then ``.env``, then the defaults. A bad value, from wherever it came, raises
:class:`ConfigError` naming the variable and the option.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from capstream.errors import ConfigError

MIB = 1024 * 1024
"""Bytes in a mebibyte (options given in MiB)."""


class EnvOptions(BaseSettings):
    """Frozen options read from the environment; subclasses set ``env_prefix`` and ``what``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        loc_by_alias=False,
        validate_default=True,
    )
    what: ClassVar[str] = "options"
    """What the options are for, in error messages ("worker options")."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(self.explain(exc)) from None

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of option ``field``."""
        info = cls.model_fields[field]
        alias = info.validation_alias
        if isinstance(alias, str):
            return alias
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @classmethod
    def explain(cls, exc: ValidationError) -> str:
        lines = []
        for error in exc.errors():
            loc = error["loc"]
            msg = error["msg"].removeprefix("Value error, ")
            if loc and isinstance(loc[0], str) and loc[0] in cls.model_fields:
                name = loc[0]
                lines.append(f"  {cls.variable(name)} ({name}): {msg} (got {error['input']!r})")
            else:
                lines.append(f"  {msg}")
        return f"invalid {cls.what}:\n" + "\n".join(lines)
