"""Tables of the reference service (SQLAlchemy 2 declarative, SQLite and PostgreSQL).

Identifiers are random version-4 UUIDs, never sequential. Secrets are never stored:
passwords as argon2id PHC strings, refresh and reset tokens as hex SHA-256 digests.
Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    String,
    TypeDecorator,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from bastion.auth.service import normalize_email
from bastion.service.db import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- accounts ---------------------------------------------------------------------------


def _email_key(context: Any) -> str | None:
    email = context.get_current_parameters().get("email")
    return None if email is None else normalize_email(email)


class User(Base):
    """An account: the email as typed (trimmed), its lookup key and an argon2id hash.

    ``email`` is where mail goes; ``email_key`` (:func:`~bastion.auth.service.normalize_email`:
    ASCII letters lower-cased, nothing else folded) is what a typed address is compared with,
    unique. It is NULL only for a row that collided with an older one when keys were first
    computed (:mod:`bastion.service.email_keys`): such an account cannot be found by email.
    """

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_email_key", "email_key", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    email_key: Mapped[str | None] = mapped_column(String(254), default=_email_key)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32), default="user")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RefreshToken(Base):
    """One refresh token of a family (a login and its rotations); only its digest is kept."""

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PasswordResetToken(Base):
    """A single-use password-reset token (30 minutes); only its digest is kept."""

    __tablename__ = "password_reset_tokens"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# --- orders -----------------------------------------------------------------------------


def rfc3339(at: datetime) -> str:
    """An aware datetime in UTC as pydantic writes it in JSON: ``...T...[.ffffff]Z`` (no
    fraction when the microseconds are zero)."""
    return (at if at.tzinfo is UTC else at.astimezone(UTC)).isoformat()[:-6] + "Z"


def _sqlite_text(stored: str | None) -> str | None:
    """SQLite's stored form (``YYYY-MM-DD HH:MM:SS.ffffff``, as SQLAlchemy writes naive UTC)
    as :func:`rfc3339` text, by slicing: 0.35 µs against 2.3 µs parsing and formatting."""
    if stored is None:
        return None
    if len(stored) != 26 or stored[10] != " " or stored[19] != ".":  # not SQLAlchemy's form
        parsed = datetime.fromisoformat(stored)
        return rfc3339(parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed)
    if stored.endswith(".000000"):
        return f"{stored[:10]}T{stored[11:19]}Z"
    return f"{stored[:10]}T{stored[11:]}Z"


def _aware_text(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite keeps no offset: stored as naive UTC).

    Naive values are refused on the way in, so local time can never be stored by mistake;
    values read back are always aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """On SQLite, parse the stored text with ``datetime.fromisoformat`` (C) rather than
        SQLAlchemy's regular expression: 2 µs instead of 11 µs per value, which a page of
        orders pays for every row. Same text, same result: SQLAlchemy stores SQLite
        datetimes as ``YYYY-MM-DD HH:MM:SS.ffffff``, an ISO 8601 form."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | datetime | None) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

        return process

    def text_result_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        """Values read as :func:`rfc3339` text rather than datetimes, for rows that go
        straight into JSON (:class:`bastion.service.db.Query`'s ``as_text``)."""
        return _sqlite_text if dialect.name == "sqlite" else _aware_text


class Order(Base):
    """An order. ``user_id`` is the owner: set from the access token, never from the body."""

    __tablename__ = "orders"
    __table_args__ = (
        # The list query: owner filter + keyset order, served by one index range scan.
        Index("ix_orders_owner_created", "user_id", "created_at", "id"),
        CheckConstraint("quantity BETWEEN 1 AND 100", name="ck_orders_quantity"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    quantity: Mapped[int] = mapped_column(nullable=False)
    street: Mapped[str] = mapped_column(String(200), nullable=False)
    city: Mapped[str] = mapped_column(String(100), nullable=False)
    country: Mapped[str] = mapped_column(String(2), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
