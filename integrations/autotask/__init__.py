"""Autotask PSA REST client. See ``client.AutotaskClient`` and ``shared/autotask/API.md``."""

from .client import AutotaskClient, Page, default_limiter, minimum_requests
from .errors import (
    AutotaskAuthError,
    AutotaskBudgetExhausted,
    AutotaskError,
    AutotaskOriginError,
    AutotaskRequestError,
    AutotaskResponseError,
    AutotaskThrottled,
    AutotaskTransientError,
)
from .limits import LocalLimiter, NoopLimiter, RedisLimiter
from .query import Condition, Q, Query
from .records import (
    BillingItem,
    Company,
    Contact,
    Currency,
    EntityField,
    Invoice,
    InvoicePdf,
    PaymentTerm,
    PicklistValue,
    ThresholdInfo,
    UserDefinedField,
    ZoneInfo,
)
from .retry import RetryPolicy
from .stats import RequestStats

__all__ = [
    "AutotaskAuthError",
    "AutotaskBudgetExhausted",
    "AutotaskClient",
    "AutotaskError",
    "AutotaskOriginError",
    "AutotaskRequestError",
    "AutotaskResponseError",
    "AutotaskThrottled",
    "AutotaskTransientError",
    "BillingItem",
    "Company",
    "Condition",
    "Contact",
    "Currency",
    "EntityField",
    "Invoice",
    "InvoicePdf",
    "LocalLimiter",
    "NoopLimiter",
    "Page",
    "PaymentTerm",
    "PicklistValue",
    "Q",
    "Query",
    "RedisLimiter",
    "RequestStats",
    "RetryPolicy",
    "ThresholdInfo",
    "UserDefinedField",
    "ZoneInfo",
    "default_limiter",
    "minimum_requests",
]
