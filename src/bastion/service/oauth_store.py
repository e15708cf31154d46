"""SQL storage of the OAuth authorization server: codes and browser sessions.

Kept in its own module (not models.py) so the OAuth tables travel with the OAuth code; the
tables share the service's declarative ``Base``, so ``create_schema`` creates them.

Only SHA-256 digests of codes and session ids are stored (a stolen table opens nothing).
Single use of a code is one conditional ``UPDATE ... WHERE used_at IS NULL RETURNING``:
the database's row lock (PostgreSQL) or write lock (SQLite) lets exactly one of two
concurrent exchanges through. The replay mark and the family of the first exchange are two
more single-row ``UPDATE ... RETURNING`` statements, so whichever comes second sees the
first (see :mod:`bastion.oauth.codes`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Boolean, ForeignKey, String, Uuid, delete, false, select, update
from sqlalchemy.orm import Mapped, mapped_column

from bastion.oauth.codes import CodeGrant, Consumed, Use
from bastion.oauth.sessions import BrowserSession
from bastion.service.db import Base, Database
from bastion.service.models import UTCDateTime, utcnow

__all__ = ["AuthorizationCode", "OAuthBrowserSession", "SqlCodeStore", "SqlSessionStore"]

#: Used and expired codes are kept this long after expiry, so a late replay is still
#: recognised (and revokes the tokens of the first exchange), then purged.
CODE_RETENTION = 24 * 3600


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class AuthorizationCode(Base):
    """An authorization code (by digest) and what it was issued for."""

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    code_challenge: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    replayed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    family_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthBrowserSession(Base):
    """A browser session of the authorization server (by digest of its cookie id)."""

    __tablename__ = "oauth_sessions"

    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    password_fingerprint: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SqlCodeStore:
    """:class:`bastion.oauth.codes.CodeStore` on the service's database."""

    def __init__(self, database: Database, *, retention: int = CODE_RETENTION) -> None:
        self.database = database
        self.retention = retention

    async def add(self, code_hash: str, grant: CodeGrant, *, now: float) -> None:
        async with self.database.session() as session, session.begin():
            await session.execute(
                delete(AuthorizationCode).where(
                    AuthorizationCode.expires_at < _at(now - self.retention)
                )
            )
            session.add(
                AuthorizationCode(
                    code_hash=code_hash,
                    client_id=grant.client_id,
                    redirect_uri=grant.redirect_uri,
                    code_challenge=grant.code_challenge,
                    user_id=grant.user_id,
                    expires_at=_at(grant.expires_at),
                )
            )

    async def consume(self, code_hash: str, now: float) -> Consumed:
        async with self.database.session() as session, session.begin():
            row = (
                await session.execute(
                    update(AuthorizationCode)
                    .where(
                        AuthorizationCode.code_hash == code_hash,
                        AuthorizationCode.used_at.is_(None),
                    )
                    .values(used_at=_at(now))
                    .returning(
                        AuthorizationCode.client_id,
                        AuthorizationCode.redirect_uri,
                        AuthorizationCode.code_challenge,
                        AuthorizationCode.user_id,
                        AuthorizationCode.expires_at,
                    )
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if row is not None:
                grant = CodeGrant(
                    client_id=row.client_id,
                    redirect_uri=row.redirect_uri,
                    code_challenge=row.code_challenge,
                    user_id=row.user_id,
                    expires_at=row.expires_at.timestamp(),
                )
                return Consumed(Use.FIRST, grant)
            replay = (
                await session.execute(
                    update(AuthorizationCode)
                    .where(AuthorizationCode.code_hash == code_hash)
                    .values(replayed=True)
                    .returning(AuthorizationCode.family_id)
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if replay is None:
                return Consumed(Use.UNKNOWN)
            return Consumed(Use.REPLAYED, family_id=replay.family_id)

    async def record_family(self, code_hash: str, family_id: uuid.UUID) -> bool:
        async with self.database.session() as session, session.begin():
            replayed = (
                await session.execute(
                    update(AuthorizationCode)
                    .where(AuthorizationCode.code_hash == code_hash)
                    .values(family_id=family_id)
                    .returning(AuthorizationCode.replayed)
                    .execution_options(synchronize_session=False)
                )
            ).scalar()
            return bool(replayed)


class SqlSessionStore:
    """:class:`bastion.oauth.sessions.SessionStore` on the service's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def add(self, session_hash: str, session: BrowserSession, *, now: float) -> None:
        async with self.database.session() as db, db.begin():
            await db.execute(
                delete(OAuthBrowserSession).where(OAuthBrowserSession.expires_at <= _at(now))
            )
            db.add(
                OAuthBrowserSession(
                    session_hash=session_hash,
                    user_id=session.user_id,
                    password_fingerprint=session.password_fingerprint,
                    expires_at=_at(session.expires_at),
                )
            )

    async def get(self, session_hash: str, now: float) -> BrowserSession | None:
        async with self.database.session() as db:
            row = await db.scalar(
                select(OAuthBrowserSession).where(
                    OAuthBrowserSession.session_hash == session_hash,
                    OAuthBrowserSession.expires_at > _at(now),
                )
            )
            if row is None:
                return None
            return BrowserSession(row.user_id, row.password_fingerprint, row.expires_at.timestamp())

    async def delete(self, session_hash: str) -> None:
        async with self.database.session() as db, db.begin():
            await db.execute(
                delete(OAuthBrowserSession).where(OAuthBrowserSession.session_hash == session_hash)
            )

    async def delete_user(self, user_id: uuid.UUID) -> None:
        async with self.database.session() as db, db.begin():
            await db.execute(
                delete(OAuthBrowserSession).where(OAuthBrowserSession.user_id == user_id)
            )
