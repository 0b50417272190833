"""Rate limits, exact across instances sharing one database.

`window.py` is the algorithm (a sliding minute of one-second buckets), `limiter.py` keeps
each subject's window in its `rate_window` row and admits calls inside the caller's write
transaction, `headers.py` writes OpenAI's `x-ratelimit-*` headers.
"""

from gateway.limits.headers import duration
from gateway.limits.limiter import Admission, Limiter, Subject, Throttled
from gateway.limits.window import WINDOW_S

__all__ = ["WINDOW_S", "Admission", "Limiter", "Subject", "Throttled", "duration"]
