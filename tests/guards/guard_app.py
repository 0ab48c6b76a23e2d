"""The plane tests/guards serve with ``mcplane run`` (alone, and as a gateway's upstream): tools
whose results hold personal data, credentials and a configured secret."""

from __future__ import annotations

import os

from pydantic import BaseModel

from mcplane import Plane

PEM = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkFAKEKEYFORTESTS\n-----END EC PRIVATE KEY-----"
TOKEN = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
SECRET_ENV = "GUARD_E2E_SECRET"

plane = Plane("guards-e2e")


class Customer(BaseModel):
    name: str
    email: str
    card: str
    iban: str


@plane.tool()
def customer() -> Customer:
    return Customer(
        name="Alice", email="alice@example.com", card="4111 1111 1111 1111", iban="DE89 3704 0044 0532 0130 00"
    )


@plane.tool()
def notes() -> str:
    return f"reach alice@example.com or +44 20 7946 0958; deploy token {TOKEN}"


@plane.tool()
def private_key() -> str:
    return f"the key: {PEM}"


@plane.tool()
def show_secret() -> str:
    return f"the database password is {os.environ.get(SECRET_ENV, '')}"


@plane.tool()
def mask_secret() -> str:
    return f"the database password is {os.environ.get(SECRET_ENV, '')}"


@plane.tool()
def clean() -> str:
    return "nothing to see"
