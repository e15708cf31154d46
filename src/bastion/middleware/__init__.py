"""The stack's layers: one pure-ASGI class per concern (their order: :mod:`bastion.stack`)."""

from __future__ import annotations

from bastion.middleware.access_log import AccessLogMiddleware
from bastion.middleware.body import BodyRulesMiddleware
from bastion.middleware.cors import CORSMiddleware
from bastion.middleware.errors import SafeErrorsMiddleware
from bastion.middleware.headers import SecurityHeadersMiddleware
from bastion.middleware.https import HTTPSOnlyMiddleware
from bastion.middleware.methods import MethodPolicyMiddleware
from bastion.middleware.paths import PathCanonicalMiddleware
from bastion.middleware.proxy import TrustedProxyMiddleware
from bastion.middleware.ratelimit import RateLimitMiddleware
from bastion.middleware.request_id import RequestIDMiddleware

__all__ = [
    "AccessLogMiddleware",
    "BodyRulesMiddleware",
    "CORSMiddleware",
    "HTTPSOnlyMiddleware",
    "MethodPolicyMiddleware",
    "PathCanonicalMiddleware",
    "RateLimitMiddleware",
    "RequestIDMiddleware",
    "SafeErrorsMiddleware",
    "SecurityHeadersMiddleware",
    "TrustedProxyMiddleware",
]
