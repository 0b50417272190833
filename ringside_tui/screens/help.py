"""The help screen: every key, grouped by where it works."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Everywhere",
        [
            ("1 … 7", "Overview, Customers, Requests, Keys, Webhooks, Stripe, Plans"),
            ("tab / shift+tab", "move focus (the mouse works too)"),
            ("ctrl+p", "command palette: every action, and jump to a customer"),
            ("n", "new customer (on Keys: new API key; on Plans: new plan)"),
            ("? / f1", "this help"),
            ("q / ctrl+q", "quit (stops the gateway cleanly)"),
        ],
    ),
    (
        "Customers",
        [
            ("/", "filter as you type (name, external id, email, plan, status); esc clears"),
            ("enter", "customer detail"),
            ("t", "top up the wallet"),
            ("e", "change budget / markup / threshold, plan and own rate limits"),
            ("s", "suspend or resume"),
            ("a", "archive (irreversible; the ledger stays)"),
            ("o", "sort by the next column (or click a header; again reverses)"),
        ],
    ),
    ("Customer detail", [("t e s a", "as on Customers"), ("escape", "back")]),
    (
        "Requests",
        [
            ("p / space", "pause or resume the live tail"),
            ("/", "filter by customer"),
            ("x", "cycle the status filter (ok, error, refused, cut, any)"),
        ],
    ),
    (
        "Keys",
        [
            ("n", "create a key: app, read, billing or admin, optional expiry (shown once)"),
            ("d", "revoke the selected key"),
        ],
    ),
    (
        "Webhooks",
        [("r", "retry the selected delivery"), ("e", "enable / disable the selected endpoint")],
    ),
    ("Stripe", [("y", "sync now")]),
    (
        "Plans",
        [
            ("n", "create a plan"),
            ("e / enter", "edit the selected plan"),
            ("d", "delete the selected plan (refused while customers are on it)"),
        ],
    ),
    (
        "Forms",
        [
            ("tab", "next field"),
            ("enter / ctrl+s", "save"),
            ("escape", "cancel"),
            ("enter / space", "on a drop-down (Plan): open it, pick with the arrows"),
            ("", "amounts are USD (25, 12.50); a blank limit means none"),
        ],
    ),
]


def help_text() -> str:
    lines = [
        "[b]Ringside dashboard[/b]",
        "[dim]The gateway runs in this process; numbers refresh live, at most a second "
        "behind.\nEvery action calls the same services as the HTTP API.[/dim]",
    ]
    for title, keys in SECTIONS:
        lines.append("")
        lines.append(f"[b $accent]{title}[/]")
        for key, what in keys:
            lines.append(f"  [b]{key:<16}[/b] {what}")
    return "\n".join(lines)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text(), id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
