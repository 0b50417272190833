"""Cell formatting: money, tokens, times, badges and bars, each sortable by its raw value."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import msgspec
from rich.console import JustifyMethod
from rich.text import Text

from gateway.ledger import nanos_to_decimal, usd_to_nanos

BADGE_STYLES = {
    "active": "bold green",
    "over budget": "bold red",
    "wallet empty": "bold #ff8700",
    "suspended": "bold yellow",
    "archived": "dim",
}
_CENT = Decimal("0.01")


_BY_TEXT: Any = object()  # sentinel: sort a cell by its lower-cased text


class Cell:
    """A table cell: its text and style, and the raw value it sorts by.

    Lightweight on purpose: the Rich Text is only built when DataTable renders the
    cell, which it does for visible rows only, so 10,000 rows cost 10,000 small
    objects, not 80,000 Text instances. `"$1,200"` sorts above `"$90"` by value.
    """

    __slots__ = ("justify", "sort_value", "style", "text")

    def __init__(
        self,
        text: str,
        sort_value: Any = _BY_TEXT,
        style: str = "",
        justify: JustifyMethod = "left",
    ) -> None:
        self.text = text
        self.style = style
        self.justify = justify
        self.sort_value = text.lower() if sort_value is _BY_TEXT else sort_value

    @property
    def plain(self) -> str:
        return self.text

    def __rich__(self) -> Text:
        return Text(self.text, style=self.style, justify=self.justify, end="")

    def _shown(self) -> tuple[str, str, str]:
        """What is drawn: two cells that draw the same are equal (the sort value aside)."""
        return (self.text, self.style, self.justify)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Cell)
            and type(other) is type(self)
            and (other._shown() == self._shown())
        )

    def __hash__(self) -> int:
        return hash(self._shown())

    def __repr__(self) -> str:
        return f"Cell({self.text!r})"


class BarCell(Cell):
    """The budget-use bar: drawn on render from the share it sorts by."""

    __slots__ = ("share", "width")

    def __init__(self, share: float, width: int) -> None:
        super().__init__(f"{share * 100:3.0f}%", share)
        self.share = share
        self.width = width

    def __rich__(self) -> Text:
        share, width = self.share, self.width
        filled = min(width, max(0, round(share * width)))
        style = "red" if share >= 1 else "#ff8700" if share >= 0.8 else "green"
        out = Text(end="")
        out.append("█" * filled, style=style)
        out.append("░" * (width - filled), style="dim")
        out.append(f" {self.text}")
        return out


def sort_key(cell: Any) -> tuple[bool, Any]:
    """DataTable sort key: raw values, blanks (None) last whatever the direction."""
    value = cell.sort_value if isinstance(cell, Cell) else str(cell).lower()
    return (value is None, value if value is not None else 0)


def cell(
    text: str, sort_value: Any = _BY_TEXT, style: str = "", justify: JustifyMethod = "left"
) -> Cell:
    return Cell(text, sort_value, style, justify)


def usd_text(nanos: int | None, *, places: int = 2) -> str:
    """$1,234.56; amounts under a cent keep enough decimals to not read as zero."""
    if nanos is None:
        return "—"
    d = nanos_to_decimal(nanos)
    if nanos != 0 and abs(d) < _CENT:
        places = max(places, 6 if abs(d) >= Decimal("0.000001") else 9)
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    sign = "-" if nanos < 0 else ""
    return f"{sign}${abs(q):,.{places}f}"


def api_text(value: Any) -> str:
    """A service value as text: exact money (msgspec.Raw) as '12.5', lists comma-separated,
    None blank."""
    if value is None:
        return ""
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode()
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def api_nanos(value: Any) -> int | None:
    """A service's USD amount (msgspec.Raw, Decimal or text) in nanos; None for null."""
    text = api_text(value)
    return usd_to_nanos(text) if text else None


def money(nanos: int | None, *, places: int = 2, style: str = "") -> Cell:
    return cell(usd_text(nanos, places=places), nanos, style=style, justify="right")


def margin(nanos: int) -> Cell:
    return money(nanos, style="red" if nanos < 0 else "")


def count(n: int) -> Cell:
    return cell(f"{n:,}", n, justify="right")


def tokens_text(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return f"{n:,}"


def tokens(inp: int, out: int) -> Cell:
    return cell(f"{tokens_text(inp)} / {tokens_text(out)}", inp + out, justify="right")


def clock_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def datetime_text(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def short_datetime_text(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%M")


def when(ms: int | None, *, full: bool = False) -> Cell:
    if ms is None:
        return cell("—", None)
    return cell(datetime_text(ms) if full else clock_text(ms), ms)


def badge(state: str) -> Cell:
    return cell(state, state, style=BADGE_STYLES.get(state, ""))


def percent_text(pct: float | None) -> str:
    return "—" if pct is None else f"{pct:.1f}%"


def budget_bar(share: float | None, *, width: int = 8) -> Cell:
    """A bar and a percentage; colour warns at 80% and alarms at 100%."""
    if share is None:
        return cell("no budget", None, style="dim")
    return BarCell(share, width)


SHORT_CODES = {
    "customer_budget_exceeded": "over budget",
    "customer_wallet_empty": "wallet empty",
    "customer_rate_limited": "rate limit",
    "key_rate_limited": "key rate limit",
    "model_not_allowed": "model not allowed",
    "upstream_error": "upstream",
    "upstream_rate_limited": "rate limited",
    "upstream_timeout": "timeout",
}


def status_cell(status: str, http_status: int, error_code: str | None) -> Cell:
    style = {"ok": "green", "refused": "#ff8700", "error": "red", "cut": "yellow"}.get(status, "")
    if status == "ok":
        label = "ok"
    else:
        reason = SHORT_CODES.get(error_code or "", error_code or "")
        label = f"{status} {http_status} {reason}".strip()
    return cell(label, status, style=style)


def latency(ms: int) -> Cell:
    return cell(f"{ms:,} ms", ms, justify="right")


def plain(value: Any) -> Cell:
    if value is None:
        return cell("—", None)
    return cell(str(value), value if isinstance(value, int | float) else _BY_TEXT)


def short_id(value: str | None) -> str:
    """cus_0abcd…: enough to tell rows apart without the full 25 characters."""
    if not value:
        return "—"
    prefix, _, rest = value.partition("_")
    return f"{prefix}_{rest[-8:]}" if rest else value
