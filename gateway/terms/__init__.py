"""A customer's terms: its own settings merged with its plan's, field by field.

Pure: no database, no I/O. `resolve.py` merges a customer and its plan into the effective
`Terms` (with where each value came from); `limits.py` holds the rate limits; `models.py`
matches model allow-list patterns (`anthropic/*`).
"""

from gateway.terms.limits import LIMIT_NAMES, LimitName, RateLimits
from gateway.terms.models import model_allowed, valid_pattern
from gateway.terms.resolve import Source, Terms, resolve_terms

__all__ = [
    "LIMIT_NAMES",
    "LimitName",
    "RateLimits",
    "Source",
    "Terms",
    "model_allowed",
    "resolve_terms",
    "valid_pattern",
]
