"""The transport limits `bastion serve` enforces, in one value built from the settings.

The defaults are the contract's ("Transport limits"); each is a setting (``BASTION_*``):

========================================  ===========  =================================
setting                                   default      refused or closed with
========================================  ===========  =================================
``MAX_HEADER_BYTES``                      16384        ``431``, then close
``MAX_HEADER_FIELDS``                     100          ``431``, then close
``MAX_URI_BYTES``                         8192         ``414``, then close
``HEADER_TIMEOUT`` (s)                    10           ``408``, then close
``BODY_IDLE_TIMEOUT`` (s)                 10           ``408`` (if no response started), close
``BODY_TIMEOUT`` (s)                      60           ``408`` (if no response started), close
``KEEPALIVE_TIMEOUT`` (s)                 5            close
``MAX_CONNECTIONS_PER_CLIENT``            64           closed at accept
``MAX_CONNECTIONS`` (per process)         4096         closed at accept
========================================  ===========  =================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["TransportLimits"]


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Sizes, timeouts (seconds) and connection caps of one server process."""

    max_header_bytes: int = 16 * 1024
    max_header_fields: int = 100
    max_uri_bytes: int = 8 * 1024
    header_timeout: float = 10.0
    body_idle_timeout: float = 10.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 5.0
    max_connections_per_client: int = 64
    max_connections: int = 4096

    @classmethod
    def from_settings(cls, settings: Any) -> TransportLimits:
        """The limits of :class:`bastion.config.Settings` (validated there)."""
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_fields=settings.max_header_fields,
            max_uri_bytes=settings.max_uri_bytes,
            header_timeout=settings.header_timeout,
            body_idle_timeout=settings.body_idle_timeout,
            body_timeout=settings.body_timeout,
            keepalive_timeout=settings.keepalive_timeout,
            max_connections_per_client=settings.max_connections_per_client,
            max_connections=settings.max_connections,
        )
