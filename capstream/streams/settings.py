"""The one settings object of a capstream process, read from ``CAPSTREAM_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Everything a capstream process needs; built once at the entry point and passed down.

    Secrets are ``SecretStr``: their repr and logs show ``**********``.
    """

    model_config = SettingsConfigDict(
        env_prefix="CAPSTREAM_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    data_dir: Path = Field(
        default=Path(".capstream"),
        description="Where the local broker, table stores and embedded ClickHouse keep data.",
    )
    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port] of an existing cluster; unset = the local broker.",
    )
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None

    topic_prefix: str = Field(default="capstream", pattern=r"^[A-Za-z0-9._-]+$")
    usage_partitions: int = Field(default=4, ge=1, le=1024)
    control_partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)

    clickhouse_url: str | None = Field(
        default=None,
        description="chdb:///path or http(s)://user@host:8123/db; unset = chDB under data_dir.",
    )
    clickhouse_password: SecretStr | None = None

    # Policy API (capstream api) and notifier (capstream notifier).
    api_host: str = Field(default="127.0.0.1", description="Address the Policy API binds to.")
    api_port: int = Field(default=8080, ge=1, le=65535)
    api_admin_key: SecretStr | None = Field(
        default=None,
        description="Admin key of the Policy API; unset = generated once, stored hashed.",
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_tls: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_sender: str = Field(default="capstream@localhost", description="From: of every email.")
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    webhook_url: str | None = Field(default=None, description="POST every notification here.")
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key.")
    channel_key: SecretStr | None = Field(
        default=None,
        description="Key sealing tenants' channel secrets (API and notifier); unset = "
        "<data dir>/channel.key, created once.",
    )
    notify_expire_s: int = Field(
        default=86_400, ge=1, description="Give up on a notification this long after creation."
    )
    notify_max_backoff_s: float = Field(default=300.0, gt=0)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_ports(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return value

    @property
    def bootstrap_servers(self) -> str:
        """The cluster to use: the configured one or the local broker."""
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    @property
    def clickhouse_dsn(self) -> str:
        """The ClickHouse store: the configured URL or embedded chDB under the data dir."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb:///{(self.data_dir / 'clickhouse').resolve().as_posix().lstrip('/')}"

    def librdkafka_config(self) -> dict[str, str]:
        """Connection options for confluent-kafka (librdkafka names)."""
        conf: dict[str, str] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            conf["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            conf["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            conf["ssl.key.location"] = str(self.ssl_keyfile)
        if self.ssl_key_password:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        return conf

    def aiokafka_config(self) -> dict[str, object]:
        """Connection options for aiokafka (and Faust's broker credentials)."""
        conf: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl_mechanism"] = self.sasl_mechanism
            conf["sasl_plain_username"] = self.sasl_username
            conf["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            conf["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
                password=(
                    self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
                ),
            )
        return conf
