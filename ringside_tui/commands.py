"""Command palette (ctrl+p): every operator action, and jump-to-customer by name or id."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider

from ringside_tui.actions import DashboardActions
from ringside_tui.customer_cache import CustomerCache
from ringside_tui.messages import TAB_LABELS, TabName, TabSelected
from ringside_tui.screens.help import HelpScreen

MAX_CUSTOMERS = 12
Command = tuple[str, Callable[[], object], str]


@runtime_checkable
class PaletteHost(Protocol):
    """What the palette needs from the app it runs in (RingsideApp provides it)."""

    @property
    def actions(self) -> DashboardActions: ...

    @property
    def customers(self) -> CustomerCache: ...

    def selected_customer_id(self) -> str | None: ...


class RingsideCommands(Provider):
    @property
    def host(self) -> PaletteHost | None:
        app = self.app
        return app if isinstance(app, PaletteHost) else None

    def _show_tab(self, tab: TabName) -> None:
        self.app.post_message(TabSelected(tab))

    def _help(self) -> None:
        self.app.push_screen(HelpScreen())

    def _commands(self, host: PaletteHost) -> list[Command]:
        actions = host.actions
        commands: list[Command] = [
            ("Create customer", actions.new_customer, "Open the new-customer form"),
            ("Create API key", actions.create_key, "A new rs_ key of any kind, shown once"),
            ("Create plan", actions.new_plan, "Defaults for customers: budget, models, limits"),
            ("Stripe: sync now", actions.stripe_sync_now, "Push unsynced usage to Stripe now"),
            ("Help: keys and screens", self._help, "Every key binding"),
        ]
        for tab, label in TAB_LABELS.items():
            commands.append(
                (f"Go to {label}", partial(self._show_tab, tab), f"Show the {label} tab")
            )
        selected = host.selected_customer_id()
        if selected is not None:
            commands += [
                ("Top up selected customer", partial(actions.open_topup, selected), ""),
                (
                    "Change limits or plan of selected customer",
                    partial(actions.open_limits, selected),
                    "",
                ),
                (
                    "Suspend / resume selected customer",
                    partial(actions.toggle_suspend, selected),
                    "",
                ),
                ("Archive selected customer", partial(actions.confirm_archive, selected), ""),
            ]
        return commands

    async def discover(self) -> Hits:
        host = self.host
        if host is None:
            return
        for name, callback, help_text in self._commands(host):
            yield DiscoveryHit(name, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        host = self.host
        if host is None:
            return
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands(host):
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text or None)
        try:
            await host.customers.ensure()
        except Exception:
            pass  # the gateway is away: the actions above still work
        actions = host.actions
        # Customers are found by the words typed ("top up acme" finds Acme), then scored
        # by the fuzzy matcher against the whole command text.
        for c in host.customers.find(query, limit=MAX_CUSTOMERS):
            verbs: list[tuple[str, Callable[[], object]]] = [
                ("Open", partial(actions.open_customer, c.id)),
                ("Top up", partial(actions.open_topup, c.id)),
                ("Change limits of", partial(actions.open_limits, c.id)),
                (
                    "Resume" if c.status == "suspended" else "Suspend",
                    partial(actions.toggle_suspend, c.id),
                ),
            ]
            for verb, callback in verbs:
                text = f"{verb} {c.name} ({c.external_id})"
                score = matcher.match(text)
                if score > 0:
                    yield Hit(score, matcher.highlight(text), callback, help=c.id)
