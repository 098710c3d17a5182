"""The TLS context for in-process ``https://``/``wss://``, from config files."""

from __future__ import annotations

import ssl

from .config import TlsConfig


class TlsSetupError(Exception):
    """The certificate or key cannot be used (reported at start-up or reload)."""


def load_context(config: TlsConfig) -> ssl.SSLContext | None:
    if not config.enabled:
        return None
    if not config.key_file:
        raise TlsSetupError("tls.key_file is required with tls.cert_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"tls: cannot load {config.cert_file} / {config.key_file}: {exc}") from None
    return context
