"""How one operation is described: its route, scope, parameters, body, answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ParamIn = Literal["query", "path", "header"]


@dataclass(frozen=True)
class Param:
    name: str
    where: ParamIn
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from this operation's success answer to another operation."""

    name: str
    operation_id: str
    parameters: dict[str, str]  # target parameter -> runtime expression


@dataclass(frozen=True)
class Op:
    method: Literal["GET", "POST", "PATCH", "DELETE", "PUT"]
    path: str  # OpenAPI form: /v1/customers/{customer_ref}
    operation_id: str
    summary: str
    tag: str
    scope: Literal["public", "proxy", "any", "read", "billing", "admin"]
    response: type | None  # a msgspec Struct; None: no JSON body (text, or loose)
    status: int = 200
    request: type | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()  # besides 401/403 (scoped routes) and the default
    description: str | None = None
    links: tuple[Link, ...] = ()
    request_schema: dict[str, Any] | None = None  # a loose body (the proxy's pass-through)
    response_schema: dict[str, Any] | None = None
    extra_content: dict[str, dict[str, Any]] = field(default_factory=dict)  # media -> schema
    response_headers: tuple[str, ...] = ()
    body_required: bool = True  # False: an empty body means "no options"
