"""Users of the admin UI and owners of contacts (sales)."""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from ekiden.auth.tables import users
from ekiden.clock import Clock
from ekiden.contacts.emails import normalise_email
from ekiden.errors import Conflict, Invalid

ROLES = ("admin", "marketer", "sales", "analyst")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    role: str


def create_user(
    conn: Connection, clock: Clock, *, email: str, password: str, role: str, name: str = ""
) -> User:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < 10:
        raise Invalid("password must be at least 10 characters")
    address = normalise_email(email)
    try:
        with conn.begin_nested():
            user_id = conn.execute(
                insert(users)
                .values(
                    email=address,
                    name=name,
                    role=role,
                    password_hash=_hasher.hash(password),
                    created_at=clock.now(),
                )
                .returning(users.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a user with email {address} already exists") from None
    return User(id=user_id, email=address, name=name, role=role)


def authenticate(conn: Connection, email: str, password: str) -> User | None:
    """The user with these credentials, or None (unknown email, wrong password, disabled)."""
    row = conn.execute(
        select(users).where(users.c.email == email.strip().lower(), users.c.disabled_at.is_(None))
    ).first()
    if row is None:
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerifyMismatchError, InvalidHashError):
        return None
    return User(id=row.id, email=row.email, name=row.name, role=row.role)


def get_user(conn: Connection, user_id: int) -> User | None:
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return None if row is None else User(id=row.id, email=row.email, name=row.name, role=row.role)
