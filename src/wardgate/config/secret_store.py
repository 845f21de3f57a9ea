"""``[secrets]``: the encrypted secrets file that ``file:NAME`` references read."""

from __future__ import annotations

from pydantic import Field, model_validator

from wardgate.config._base import StrictModel as _Strict

__all__ = ["DEFAULT_KEY_ENV", "SecretsSettings"]

#: Where the file's key is read from when neither ``key_env`` nor ``key_file`` is set.
DEFAULT_KEY_ENV = "WARDGATE_SECRETS_KEY"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class SecretsSettings(_Strict):
    """The Fernet-encrypted JSON file of ``file:NAME`` secrets (docs/sandbox.md).

    The key comes from the environment variable ``key_env`` (its name, never a value
    in the config) or from ``key_file``; both files must be readable by the gateway's
    user only.
    """

    file: str | None = None
    key_env: str | None = Field(None, pattern=_ENV_NAME)
    key_file: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> SecretsSettings:
        if self.key_env is not None and self.key_file is not None:
            raise ValueError("set key_env or key_file, not both")
        if self.file is None and (self.key_env is not None or self.key_file is not None):
            raise ValueError("a key without 'file' reads nothing")
        return self

    def check_ref(self, ref: str) -> None:
        """A secret reference names a source there is: ``env:VARIABLE``, or
        ``file:NAME`` when a file is configured.

        Raises:
            ValueError: it does not.
        """
        scheme, sep, key = ref.partition(":")
        if not sep or not key or scheme not in ("env", "file"):
            raise ValueError(f"{ref!r}: must be 'env:VARIABLE' or 'file:NAME'")
        if scheme == "file" and self.file is None:
            raise ValueError(f"{ref!r} needs a [secrets] file")

    @property
    def key_source(self) -> str:
        """Where the key is read from, for messages (never the key)."""
        if self.key_file is not None:
            return f"key file {self.key_file}"
        return f"environment variable {self.key_env or DEFAULT_KEY_ENV}"
