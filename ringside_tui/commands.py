"""Command palette (ctrl+p): every operator action, and jump-to-customer by name or id."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from ringside_tui.app import RingsideApp

MAX_CUSTOMERS = 12


class RingsideCommands(Provider):
    @property
    def rapp(self) -> RingsideApp:
        return self.app  # type: ignore[return-value]

    def _actions(self) -> list[tuple[str, Callable[[], Any], str]]:
        app = self.rapp
        actions: list[tuple[str, Callable[[], Any], str]] = [
            ("Create customer", app.action_new_customer, "Open the new-customer form"),
            ("Create app key", app.open_create_key, "A new rs_ key for the proxy, shown once"),
            ("Stripe: sync now", app.stripe_sync_now, "Push unsynced usage to Stripe now"),
            ("Help: keys and screens", app.action_help, "Every key binding"),
        ]
        for tab, label in app.TAB_LABELS.items():
            actions.append(
                (f"Go to {label}", partial(app.action_show_tab, tab), f"Show the {label} tab")
            )
        selected = app.selected_customer_id()
        if selected is not None:
            actions += [
                ("Top up selected customer", partial(app.open_topup, selected), ""),
                ("Change limits of selected customer", partial(app.open_limits, selected), ""),
                ("Suspend / resume selected customer", partial(app.toggle_suspend, selected), ""),
                ("Archive selected customer", partial(app.confirm_archive, selected), ""),
            ]
        return actions

    async def discover(self) -> Hits:
        for name, callback, help_text in self._actions():
            yield DiscoveryHit(name, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._actions():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text or None)
        app = self.rapp
        try:
            await app.ensure_customers()
        except Exception:
            pass  # the gateway is away: actions above still work
        # Customers are found by the words typed ("top up acme" finds Acme), then scored
        # by the fuzzy matcher against the whole command text.
        for c in app.find_customers(query, limit=MAX_CUSTOMERS):
            verbs: list[tuple[str, Callable[[], Any]]] = [
                ("Open", partial(app.open_customer, c.id)),
                ("Top up", partial(app.open_topup, c.id)),
                ("Change limits of", partial(app.open_limits, c.id)),
                (
                    "Resume" if c.status == "suspended" else "Suspend",
                    partial(app.toggle_suspend, c.id),
                ),
            ]
            for verb, callback in verbs:
                text = f"{verb} {c.name} ({c.external_id})"
                score = matcher.match(text)
                if score > 0:
                    yield Hit(score, matcher.highlight(text), callback, help=c.id)
