"""Fixtures for module tests: users of each role, logged in through the real login endpoint."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from modules.user.services import create_user

PASSWORD = "correct horse battery staple"
_counter = itertools.count()


@dataclass(frozen=True)
class Caller:
    """A logged-in user: send ``headers`` with requests to act as them."""

    email: str
    uuid: uuid.UUID
    user_id: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(
    client: FlaskClient, email: str, password: str = PASSWORD, **headers: str
) -> TestResponse:
    return client.post("/api/v1/auth/login", json={"email": email, "password": password},
                       headers=headers)  # fmt: skip


@pytest.fixture
def make_user(app: Flask) -> Callable[..., tuple[int, uuid.UUID, str]]:
    """Create a user directly through the service: ``make_user(role="staff")``."""

    def make(
        email: str | None = None,
        *,
        role: str = "customer",
        password: str | None = PASSWORD,
        active: bool = True,
        name: str = "Test User",
    ) -> tuple[int, uuid.UUID, str]:
        email = email or f"{role}.{next(_counter)}@example.test"
        with app.app_context():
            user = create_user(email, role=role, password=password, active=active, name=name)
            return user.id, user.uuid, user.email

    return make


@pytest.fixture
def log_in_as(
    client: FlaskClient, make_user: Callable[..., tuple[int, uuid.UUID, str]]
) -> Callable[..., Caller]:
    """Create a user with ``role`` and log them in: ``log_in_as("admin")``."""

    def as_role(role: str = "customer", email: str | None = None) -> Caller:
        user_id, user_uuid, user_email = make_user(email, role=role)
        response = login(client, user_email)
        assert response.status_code == 200, response.get_json()
        return Caller(user_email, user_uuid, user_id, response.get_json()["access_token"])

    return as_role


@pytest.fixture
def admin(log_in_as: Callable[..., Caller]) -> Caller:
    return log_in_as("admin")


@pytest.fixture
def staff(log_in_as: Callable[..., Caller]) -> Caller:
    return log_in_as("staff")


@pytest.fixture
def customer(log_in_as: Callable[..., Caller]) -> Caller:
    return log_in_as("customer")
