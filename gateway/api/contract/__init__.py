"""The HTTP contract: every route's parameters, body and answers as typed models
(msgspec Structs), and the OpenAPI document generated from them.

`core.py` and `webhooks.py` list the operations; `models.py` (and the models beside the
webhook operations) are the types; `document.py` turns them into OpenAPI 3.1. A test
checks that the operations and the app's routes are the same set, and schemathesis holds
the running server to the document.
"""

from gateway.api.contract import core, webhooks
from gateway.api.contract.document import openapi_document
from gateway.api.contract.spec import Link, Op, Param

OPERATIONS: list[Op] = [*core.OPS, *webhooks.OPS]

__all__ = ["OPERATIONS", "Link", "Op", "Param", "openapi_document"]
