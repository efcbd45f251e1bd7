"""Request and response bodies of the account routes: accounts, keys, bots, resumes and
top-up requests (the policy and settings bodies are in ``models.py``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from capstream.api.models import Email, Ident, Plan, Text, _Body
from capstream.streams.records import Category


class NewAccountBody(_Body):
    """An account to create (admin key only)."""

    account_id: Ident
    owner_email: Email
    plan: Plan = "free"
    timezone: Annotated[Text, Field(min_length=1, max_length=64)] = "UTC"


class PlanBody(_Body):
    """A plan change (admin key only)."""

    plan: Plan


class BotBody(_Body):
    """A bot to register (or rename)."""

    name: Annotated[Text, Field(max_length=200)] = ""


class ResumeBody(_Body):
    """Who resumes the bot (recorded with the key that called, in the decisions table)."""

    requested_by: Annotated[Text, Field(max_length=200)] = ""
    note: Annotated[Text, Field(max_length=500)] = ""


class ResumeOut(BaseModel):
    """A resume on its way to the processors (they lift the block within moments)."""

    status: Literal["resuming"]
    account_id: str
    bot_id: str
    resumed_at_ms: int
    resumed_by: str
    message: str


class TopupBody(_Body):
    """A top-up request for one category's cap, emailed to the account's admin."""

    category: Category = "text"
    period: Literal["daily", "monthly"] = "monthly"
    requested_by: Annotated[Text, Field(min_length=1, max_length=200)] = "dashboard"
    note: Annotated[Text, Field(max_length=2000)] = ""


class KeyOut(BaseModel):
    key_id: str
    created_at_ms: int
    revoked: bool


class NewKeyOut(BaseModel):
    """A key just minted: ``api_key`` is shown this once and never again."""

    account_id: str
    key_id: str
    api_key: str


class AccountOut(BaseModel):
    account_id: str
    owner_email: str
    plan: str
    bots: list[str]
    keys: list[KeyOut]


class NewAccountOut(AccountOut):
    api_key: str = Field(description="The account's first key; shown this once.")


class BotOut(BaseModel):
    bot_id: str
    name: str
    created_at_ms: int


class TopupOut(BaseModel):
    status: Literal["requested"]
    notification_id: str
    recipients: list[str]
    message: str
