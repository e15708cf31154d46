"""The SQLAlchemy implementation of :class:`bastion.auth.service.AccountStore`.

The two operations that must happen at most once per token are single conditional UPDATEs
whose returned rows decide the outcome — no read-then-write window:

* refresh rotation: ``UPDATE refresh_tokens SET revoked = true WHERE token_hash = :h AND
  revoked = false AND expires_at > :now RETURNING ...``. Under concurrency (threads,
  worker processes, SQLite's file lock or PostgreSQL's row lock) exactly one caller gets the
  row; the others see a revoked token and trigger reuse handling.
* reset confirmation: ``UPDATE password_reset_tokens SET used_at = :now WHERE token_hash = :h
  AND used_at IS NULL AND expires_at > :now RETURNING user_id``, then the password and the
  revocation of every refresh token, in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import false

from bastion.auth.service import Account, Rotation, RotationResult, normalize_email
from bastion.service.db import Database
from bastion.service.metrics import refresh_token_reused
from bastion.service.models import PasswordResetToken, RefreshToken, User


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _account(user: User) -> Account:
    return Account(user.id, user.email, user.password_hash, user.role)


class SqlAccountStore:
    """Accounts, refresh tokens and reset tokens in the service's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def find_by_email(self, email: str) -> Account | None:
        if "\x00" in email:  # no account has one; PostgreSQL would refuse the statement
            return None
        async with self.database.session() as session:
            user = await session.scalar(select(User).where(User.email_key == email))
            return _account(user) if user is not None else None

    async def get(self, user_id: uuid.UUID) -> Account | None:
        async with self.database.session() as session:
            user = await session.get(User, user_id)
            return _account(user) if user is not None else None

    async def create(self, account: Account) -> bool:
        async with self.database.session() as session:
            session.add(
                User(
                    id=account.id,
                    email=account.email,
                    email_key=normalize_email(account.email),
                    password_hash=account.password_hash,
                    role=account.role,
                )
            )
            try:
                await session.commit()
            except IntegrityError:  # the unique email key: someone has this address already
                await session.rollback()
                return False
            return True

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        async with self.database.session() as session, session.begin():
            await session.execute(
                update(User).where(User.id == user_id).values(password_hash=password_hash)
            )

    # --- refresh tokens -------------------------------------------------------------------

    async def add_refresh(
        self, *, token_hash: str, user_id: uuid.UUID, family_id: uuid.UUID, expires_at: float
    ) -> None:
        async with self.database.session() as session, session.begin():
            session.add(
                RefreshToken(
                    token_hash=token_hash,
                    user_id=user_id,
                    family_id=family_id,
                    expires_at=_at(expires_at),
                )
            )

    async def rotate_refresh(
        self, *, token_hash: str, new_hash: str, now: float, expires_at: float
    ) -> RotationResult:
        moment = _at(now)
        async with self.database.session() as session, session.begin():
            claimed = (
                await session.execute(
                    update(RefreshToken)
                    .where(
                        RefreshToken.token_hash == token_hash,
                        RefreshToken.revoked == false(),
                        RefreshToken.expires_at > moment,
                    )
                    .values(revoked=True, revoked_at=moment)
                    .returning(RefreshToken.user_id, RefreshToken.family_id)
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if claimed is not None:
                user = await session.get(User, claimed.user_id)
                if user is None:
                    return RotationResult(Rotation.INVALID)
                session.add(
                    RefreshToken(
                        token_hash=new_hash,
                        user_id=claimed.user_id,
                        family_id=claimed.family_id,
                        expires_at=_at(expires_at),
                    )
                )
                return RotationResult(Rotation.ROTATED, _account(user))
            seen = (
                await session.execute(
                    select(RefreshToken.user_id, RefreshToken.revoked).where(
                        RefreshToken.token_hash == token_hash
                    )
                )
            ).first()
            if seen is None or not seen.revoked:
                return RotationResult(Rotation.INVALID)  # unknown, or expired but not revoked
            # A revoked token came back: someone else holds a copy (RFC 9700 §4.14.2).
            await self._revoke_user(session, seen.user_id, moment)
            refresh_token_reused()  # the metric (both /auth/refresh and /oauth/token land here)
            return RotationResult(Rotation.REUSED, user_id=seen.user_id)

    async def revoke_refresh(self, token_hash: str, now: float) -> uuid.UUID | None:
        async with self.database.session() as session, session.begin():
            user_id: uuid.UUID | None = (
                await session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.token_hash == token_hash, RefreshToken.revoked == false())
                    .values(revoked=True, revoked_at=_at(now))
                    .returning(RefreshToken.user_id)
                    .execution_options(synchronize_session=False)
                )
            ).scalar()
            return user_id

    async def revoke_family(self, family_id: uuid.UUID, now: float) -> None:
        async with self.database.session() as session, session.begin():
            await session.execute(
                update(RefreshToken)
                .where(RefreshToken.family_id == family_id, RefreshToken.revoked == false())
                .values(revoked=True, revoked_at=_at(now))
            )

    @staticmethod
    async def _revoke_user(session: AsyncSession, user_id: uuid.UUID, moment: datetime) -> None:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked == false())
            .values(revoked=True, revoked_at=moment)
        )

    # --- password reset -------------------------------------------------------------------

    async def add_reset(
        self,
        *,
        token_hash: str,
        user_id: uuid.UUID,
        expires_at: float,
        now: float | None = None,
        limit: int | None = None,
        window: float = 3600.0,
    ) -> bool:
        """Store a reset token; with *limit*, only if the user got fewer than *limit* reset
        tokens in the last *window* seconds (False, nothing stored, otherwise).

        The budget is checked under a write lock on the user's row (PostgreSQL's row lock,
        SQLite's database write lock, both taken by a no-op UPDATE before the count), so a
        burst of concurrent requests cannot each see room for one more."""
        async with self.database.session() as session, session.begin():
            if limit is not None and now is not None:
                await session.execute(update(User).where(User.id == user_id).values(role=User.role))
                recent = await session.scalar(
                    select(func.count())
                    .select_from(PasswordResetToken)
                    .where(
                        PasswordResetToken.user_id == user_id,
                        PasswordResetToken.created_at > _at(now - window),
                    )
                )
                if (recent or 0) >= limit:
                    return False
            session.add(
                PasswordResetToken(
                    token_hash=token_hash,
                    user_id=user_id,
                    expires_at=_at(expires_at),
                    **({"created_at": _at(now)} if now is not None else {}),
                )
            )
            return True

    async def reset_account(self, token_hash: str, now: float) -> Account | None:
        async with self.database.session() as session:
            user = await session.scalar(
                select(User)
                .join(PasswordResetToken, PasswordResetToken.user_id == User.id)
                .where(
                    PasswordResetToken.token_hash == token_hash,
                    PasswordResetToken.used_at.is_(None),
                    PasswordResetToken.expires_at > _at(now),
                )
            )
            return _account(user) if user is not None else None

    async def complete_reset(self, *, token_hash: str, now: float, password_hash: str) -> bool:
        moment = _at(now)
        async with self.database.session() as session, session.begin():
            user_id = (
                await session.execute(
                    update(PasswordResetToken)
                    .where(
                        PasswordResetToken.token_hash == token_hash,
                        PasswordResetToken.used_at.is_(None),
                        PasswordResetToken.expires_at > moment,
                    )
                    .values(used_at=moment)
                    .returning(PasswordResetToken.user_id)
                    .execution_options(synchronize_session=False)
                )
            ).scalar()
            if user_id is None:
                return False
            await session.execute(
                update(User).where(User.id == user_id).values(password_hash=password_hash)
            )
            # Other outstanding reset links of this user die with the old password.
            await session.execute(
                update(PasswordResetToken)
                .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
                .values(used_at=moment)
            )
            await self._revoke_user(session, user_id, moment)
            return True
