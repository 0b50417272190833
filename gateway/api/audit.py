"""The audit log (read keys and up): every management write, who made it, before -> after."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.response import Stream

from gateway.api.common import json_response, query, services


@get(
    "/v1/audit_log",
    tags=["audit"],
    summary="Audit entries, newest first (filters customer_id, action, since, until; CSV)",
)
async def list_audit_log(request: Request[Any, Any, Any]) -> Response[Any]:
    params = query(
        request,
        "limit",
        "starting_after",
        "ending_before",
        "customer_id",
        "action",
        "since",
        "until",
    )
    audit = services(request).audit
    if "text/csv" in request.headers.get("accept", ""):
        lines = await audit.csv(params)
        return Stream(
            lines,
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit_log.csv"'},
        )
    result = await audit.list(params)
    return json_response(result.to_api("/v1/audit_log"))


ROUTES = [list_audit_log]
