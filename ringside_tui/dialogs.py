"""Modal forms for operator actions, and the confirm / key-shown-once dialogs.

A form checks what it can locally (required, numbers) for instant feedback, then calls
the service; the service stays the authority, and its `ApiError` lands under the field
it names (`param`), or at the bottom of the form.

A field named `limits.requests_per_minute` fills `{"limits": {"requests_per_minute": …}}`;
a `choice` field is a drop-down whose value "" means none (null); an `expiry` field takes
a date, an RFC 3339 time or a duration from now (`90d`) and sends RFC 3339.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import Reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from gateway.errors import ApiError
from gateway.terms import LIMIT_NAMES, LimitName
from ringside_tui.backend import GatewayUnavailable

FieldKind = Literal["text", "usd", "decimal", "bool", "int", "list", "choice", "expiry"]
Choices = tuple[tuple[str, str], ...]  # (label, value); the value "" means none
NONE_CHOICE = ""
# Select's `value` reactive, to redraw its label (read through `vars`: a generic class's
# attribute read through the class is ambiguous to mypy).
_SELECT_VALUE: Reactive[Any] = vars(Select)["value"]


@dataclass(frozen=True)
class Field:
    name: str  # the service parameter it fills ("limits.max_concurrent": a nested one)
    label: str
    kind: FieldKind = "text"
    required: bool = False
    placeholder: str = ""
    initial: str | bool = ""
    aliases: tuple[str, ...] = ()  # other params the service may name for this field
    choices: Choices = ()  # a `choice` field's options
    blank_choice: str | None = "none"  # a `choice` field's "no value" option (None: none)

    @property
    def widget_id(self) -> str:
        return "field-" + self.name.replace(".", "-")

    @property
    def error_id(self) -> str:
        return "error-" + self.name.replace(".", "-")

    def names(self, param: str) -> bool:
        """Whether the service's `param` is this field (`allowed_models[2]` is too)."""
        return any(
            param == name or param.startswith(f"{name}[") for name in (self.name, *self.aliases)
        )


def parse_int(text: str) -> int | None:
    """'60', '100,000', '1_000' -> int; None when it is not a whole number."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    try:
        return int(cleaned)
    except ValueError:
        return None


_DURATION = re.compile(r"(\d+)\s*(m|min|h|d|w)", re.IGNORECASE)
_DURATION_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, now: datetime | None = None) -> str | None:
    """A moment as RFC 3339 UTC ('2027-01-01T00:00:00Z'), from a duration from `now`
    ('90d', '12h', '2w', '30m'), a date ('2027-01-01', midnight UTC), a date and time
    without an offset (UTC) or an RFC 3339 time; None when it is none of those. Whether
    it is in the future is the service's to say."""
    cleaned = text.strip()
    duration = _DURATION.fullmatch(cleaned)
    try:
        if duration is not None:
            amount, unit = int(duration.group(1)), duration.group(2).lower()
            start = now if now is not None else datetime.now(UTC)
            when = start + timedelta(**{_DURATION_UNITS[unit]: amount})
        else:
            when = datetime.fromisoformat(cleaned.replace("z", "Z").replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError):  # not a time, or past year 9999
        return None


def parse_list(text: str) -> list[str]:
    """'openai/*, anthropic/claude-*' -> ['openai/*', 'anthropic/claude-*']."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _put(body: dict[str, Any], name: str, value: Any) -> None:
    """body["limits"]["max_concurrent"] = value, for the field `limits.max_concurrent`."""
    *path, last = name.split(".")
    target = body
    for part in path:
        target = target.setdefault(part, {})
    target[last] = value


def parse_number(text: str, *, usd: bool) -> Decimal | None:
    """'12.50', '$1,200', '0.3' -> Decimal; None when it is not a finite number."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if usd:
        cleaned = cleaned.removeprefix("$").removeprefix("US$").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


class FormCheckbox(Checkbox, inherit_bindings=False):
    """Space toggles; enter is left to the form, so enter saves from any field."""

    BINDINGS = [Binding("space", "toggle_button", "Toggle", show=False)]


class FormScreen(ModalScreen[dict[str, Any] | None]):
    """A validated form. `perform(body)` runs the action; its result dismisses the form
    (None: cancelled)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Save"),
        Binding("enter", "submit", "Save", show=False),
        # Priority: the focus moves before the next key is routed, so text typed right
        # after a tab (a fast typist, a script) lands in the next field. The plain twins
        # serve tabs typed ahead of the form that arrive through the app (on_key there).
        Binding("tab", "next_field", "Next field", show=False, priority=True),
        Binding("shift+tab", "previous_field", "Previous field", show=False, priority=True),
        Binding("tab", "next_field", "Next field", show=False),
        Binding("shift+tab", "previous_field", "Previous field", show=False),
    ]

    def __init__(
        self,
        title: str,
        fields: list[Field],
        perform: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        *,
        submit_label: str = "Save",
        intro: str = "",
        only_changed: bool = False,
        form_id: str = "form",
    ) -> None:
        super().__init__(id=f"{form_id}-screen")
        self.form_title = title
        self.fields = fields
        self.perform = perform
        self.submit_label = submit_label
        self.intro = intro
        # Edit forms send only what the operator changed; a cleared field sends null.
        self.only_changed = only_changed
        self.form_id = form_id
        self.busy = False
        self._shown_options: dict[str, list[tuple[str, str]]] = {
            f.name: _options(f.choices, str(f.initial or ""), f.blank_choice)
            for f in fields
            if f.kind == "choice"
        }

    def compose(self) -> ComposeResult:
        with Vertical(id=self.form_id, classes="form"):
            yield Label(self.form_title, classes="form-title")
            if self.intro:
                yield Static(self.intro, classes="form-intro")
            for f in self.fields:
                with Horizontal(classes="field-row"):
                    yield Label(f"{f.label}{' *' if f.required else ''}", classes="field-label")
                    if f.kind == "bool":
                        yield FormCheckbox("space toggles", value=bool(f.initial), id=f.widget_id)
                    elif f.kind == "choice":
                        yield Select[str](
                            list(self._shown_options[f.name]),
                            value=str(f.initial or ""),
                            allow_blank=False,
                            compact=True,
                            id=f.widget_id,
                        )
                    else:
                        yield Input(
                            value=str(f.initial or ""),
                            placeholder=f.placeholder,
                            id=f.widget_id,
                            select_on_focus=False,
                        )
                yield Static("", id=f.error_id, classes="field-error")
            yield Static("", id="form-error", classes="field-error")
            with Horizontal(classes="form-buttons"):
                yield Button(self.submit_label, variant="primary", id="submit")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.set_focus(self.query("Input, Checkbox").first())
        self.call_after_refresh(self._show_picked)

    def _show_picked(self) -> None:
        """Make each drop-down's label show its value. A value set before the drop-down
        had mounted its label does not reach it, and setting the same value again does
        not redraw it: the label would read "Select" over a valid pick."""
        for select in self.query(Select).results(Select):
            select.mutate_reactive(_SELECT_VALUE)

    def on_key(self, event: events.Key) -> None:
        """Keys typed before the form had focus (type-ahead) still reach a field, in order."""
        if not event.is_printable or event.character is None:
            return
        if self.focused is None or isinstance(self.focused, Input):
            self.type_ahead(event.character)
            event.stop()
            event.prevent_default()

    def type_ahead(self, text: str) -> None:
        target = self.focused
        if not isinstance(target, Input):
            target = self.query(Input).first()
            self.set_focus(target)
        target.insert_text_at_cursor(text)

    def action_next_field(self) -> None:
        self.focus_next()

    def action_previous_field(self) -> None:
        self.focus_previous()

    def set_placeholder(self, name: str, placeholder: str) -> None:
        """A text field's hint, changed after the form opened (what blank means)."""
        field = next(f for f in self.fields if f.name == name)
        if field.kind not in ("bool", "choice"):
            self.query_one(f"#{field.widget_id}", Input).placeholder = placeholder

    def set_choices(self, name: str, choices: Choices) -> None:
        """New options for a `choice` field (loaded after the form opened); the one picked
        stays picked while it is still offered."""
        field = next(f for f in self.fields if f.name == name)
        options = _options(choices, str(field.initial or ""), field.blank_choice)
        if options == self._shown_options.get(name):
            return
        self._shown_options[name] = options
        select = self.query_one(f"#{field.widget_id}", Select)
        self._show_options(select, options, select.value)

    def _show_options(
        self, select: Select[str], options: list[tuple[str, str]], picked: object
    ) -> None:
        try:
            select.set_options(options)
        except NoMatches:
            # The list came back before the drop-down finished composing: once more,
            # after the next refresh.
            self.call_after_refresh(self._show_options, select, options, picked)
            return
        if any(value == picked for _, value in options):
            select.value = str(picked)
        select.mutate_reactive(_SELECT_VALUE)  # the label, even when the value is unchanged

    # ------------------------------------------------------------------ values
    def collect(self) -> tuple[dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for f in self.fields:
            if f.kind == "bool":
                value: Any = self.query_one(f"#{f.widget_id}", Checkbox).value
                if not self.only_changed or value != bool(f.initial):
                    _put(body, f.name, value)
                continue
            if f.kind == "choice":
                picked = self.query_one(f"#{f.widget_id}", Select).selection or NONE_CHOICE
                if self.only_changed:
                    if picked != str(f.initial or ""):
                        _put(body, f.name, picked or None)
                elif picked:
                    _put(body, f.name, picked)
                continue
            text = self.query_one(f"#{f.widget_id}", Input).value.strip()
            if self.only_changed and text == str(f.initial or "").strip():
                continue
            if not text:
                if f.required:
                    errors[f.name] = f"{f.label} is required."
                elif self.only_changed:
                    _put(body, f.name, None)
                continue
            if f.kind in ("usd", "decimal"):
                number = parse_number(text, usd=f.kind == "usd")
                if number is None:
                    example = "25 or 12.50" if f.kind == "usd" else "1.25"
                    errors[f.name] = f"{f.label} must be a number, e.g. {example}."
                    continue
                if number < 0:
                    errors[f.name] = f"{f.label} cannot be negative."
                    continue
                _put(body, f.name, number)
            elif f.kind == "int":
                whole = parse_int(text)
                if whole is None:
                    errors[f.name] = f"{f.label} must be a whole number, e.g. 60."
                    continue
                if whole < 1:
                    errors[f.name] = f"{f.label} must be at least 1 (blank: no limit)."
                    continue
                _put(body, f.name, whole)
            elif f.kind == "list":
                _put(body, f.name, parse_list(text))
            elif f.kind == "expiry":
                when = parse_expiry(text)
                if when is None:
                    errors[f.name] = (
                        f"{f.label} must be a date (2027-01-01), a time (2027-01-01T09:00Z) "
                        "or a duration from now (90d, 12h)."
                    )
                    continue
                _put(body, f.name, when)
            else:
                _put(body, f.name, text)
        return body, errors

    def show_errors(self, errors: dict[str, str | None]) -> None:
        form_level: list[str] = []
        for box in self.query(".field-error").results(Static):
            box.update("")
            box.display = False
        first: str | None = None
        for param, message in errors.items():
            target = next((f for f in self.fields if param and f.names(param)), None)
            if target is None:
                form_level.append(message or "")
                continue
            box = self.query_one(f"#{target.error_id}", Static)
            box.update(message or "")
            box.display = True
            first = first or target.widget_id
        if form_level:
            box = self.query_one("#form-error", Static)
            box.update("\n".join(form_level))
            box.display = True
        if first is not None:
            self.query_one(f"#{first}").focus()

    # ------------------------------------------------------------------ actions
    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    @on(Button.Pressed, "#submit")
    def _submit_pressed(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        if self.busy:
            return
        body, errors = self.collect()
        if errors:
            self.show_errors(dict(errors))
            return
        if self.only_changed and not body:
            self.show_errors({"": "Nothing changed."})
            return
        self.show_errors({})
        self.busy = True
        self.query_one("#submit", Button).disabled = True
        self.run_worker(self._perform(body), exclusive=True, group="form")

    async def _perform(self, body: dict[str, Any]) -> None:
        try:
            result = await self.perform(body)
        except ApiError as exc:
            self.show_errors({exc.param or "": exc.message})
        except GatewayUnavailable as exc:
            self.show_errors({"": f"Gateway unavailable: {exc}"})
        except Exception as exc:  # shown, never a crash of the dashboard
            self.show_errors({"": f"Unexpected error: {exc}"})
        else:
            self.dismiss(result)
            return
        finally:
            self.busy = False
        self.query_one("#submit", Button).disabled = False


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "confirm", "Yes"),
        Binding("n,escape", "cancel", "No"),
    ]

    def __init__(self, message: str, *, confirm_label: str = "Yes", danger: bool = False) -> None:
        super().__init__(id="confirm-screen")
        self.message = message
        self.confirm_label = confirm_label
        self.danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="form"):
            yield Static(self.message, classes="form-intro")
            with Horizontal(classes="form-buttons"):
                yield Button(
                    f"{self.confirm_label} (y)",
                    variant="error" if self.danger else "primary",
                    id="yes",
                )
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#no", Button))

    @on(Button.Pressed, "#yes")
    def action_confirm(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_cancel(self) -> None:
        self.dismiss(False)


class KeyCreatedScreen(ModalScreen[None]):
    """The one time a created key is visible."""

    BINDINGS = [
        Binding("c", "copy", "Copy"),
        Binding("escape,enter", "close", "Close"),
    ]

    def __init__(
        self, name: str, key: str, kind: str = "app", expires_at: str | None = None
    ) -> None:
        super().__init__(id="key-created-screen")
        self.key_name = name
        self.key = key
        self.kind = kind
        self.expires_at = expires_at

    def compose(self) -> ComposeResult:
        with Vertical(id="key-created", classes="form"):
            yield Label(
                f"{self.kind.capitalize()} key '{self.key_name}' created", classes="form-title"
            )
            expiry = f"It expires at {self.expires_at}. " if self.expires_at else ""
            yield Static(
                f"{KEY_KIND_HELP.get(self.kind, '')}. {expiry}"
                "Copy it now: it is stored hashed and never shown again.",
                classes="form-intro",
            )
            yield Static(self.key, id="new-key", classes="secret")
            with Horizontal(classes="form-buttons"):
                yield Button("Copy (c)", id="copy")
                yield Button("Done (enter)", variant="primary", id="done")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#done", Button))

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.key)
        self.notify("Key copied to the clipboard (where the terminal allows it).")

    @on(Button.Pressed, "#done")
    def action_close(self) -> None:
        self.dismiss(None)


# ---------------------------------------------------------------------------- forms


def _options(choices: Choices, initial: str, blank: str | None = "none") -> list[tuple[str, str]]:
    """The drop-down's options: `blank` ("none") first unless it is None, and the initial
    value even when it is not among `choices` yet (the list loads after the form opens)."""
    options = [(blank, NONE_CHOICE)] if blank is not None else []
    options += [(label, value) for label, value in choices if value != NONE_CHOICE]
    if initial and all(value != initial for _, value in options):
        options.append((initial, initial))
    return options


LIMIT_LABELS: dict[LimitName, tuple[str, str]] = {
    "requests_per_minute": ("Requests / min", "calls a minute"),
    "tokens_per_minute": ("Tokens / min", "tokens a minute"),
    "max_concurrent": ("Max concurrent", "calls in flight at once"),
}


def limit_rate_fields(
    initial: dict[str, str] | None = None, fallback: dict[str, str] | None = None
) -> list[Field]:
    """The three rate limits, as `limits.<name>` fields. `fallback` says what a blank
    field means (the plan's value, for a customer on a plan)."""
    out = []
    for name in LIMIT_NAMES:
        label, what = LIMIT_LABELS[name]
        blank = (fallback or {}).get(name) or "no limit"
        out.append(
            Field(
                f"limits.{name}",
                label,
                kind="int",
                placeholder=f"{what}; blank = {blank}",
                initial=(initial or {}).get(name, ""),
            )
        )
    return out


def customer_fields(plans: Choices = ()) -> list[Field]:
    return [
        Field("name", "Name", required=True, placeholder="Acme Corp"),
        Field("external_id", "External id", required=True, placeholder="the id your app uses"),
        Field("email", "Email", placeholder="billing@acme.test"),
        Field(
            "monthly_budget_usd",
            "Monthly budget",
            kind="usd",
            placeholder="USD of cost per month; blank = no cap",
            aliases=("budget_usd",),
        ),
        Field(
            "markup", "Markup", kind="decimal", placeholder="price = cost x markup; blank = default"
        ),
        Field(
            "low_balance_threshold_usd",
            "Low-balance alert",
            kind="usd",
            placeholder="USD; wallet.low fires below it",
        ),
        Field("prepaid", "Prepaid wallet", kind="bool"),
        Field("plan", "Plan", kind="choice", choices=plans),
    ]


def limit_fields(
    budget: str,
    markup: str,
    threshold: str,
    *,
    plan: str = "",
    plans: Choices = (),
    limits: dict[str, str] | None = None,
    fallback: dict[str, str] | None = None,
) -> list[Field]:
    """The edit form: money limits, the plan and the customer's own rate limits.
    `fallback` says what each blank field means (a plan's value, or none)."""
    fallback = fallback or {}
    return [
        Field(
            "monthly_budget_usd",
            "Monthly budget",
            kind="usd",
            placeholder=f"USD of cost per month; blank = {fallback.get('budget', 'no cap')}",
            initial=budget,
            aliases=("budget_usd",),
        ),
        Field(
            "markup",
            "Markup",
            kind="decimal",
            placeholder=f"price = cost x markup; blank = {fallback.get('markup', 'default')}",
            initial=markup,
        ),
        Field(
            "low_balance_threshold_usd",
            "Low-balance alert",
            kind="usd",
            placeholder=f"USD; blank = {fallback.get('threshold', 'none')}",
            initial=threshold,
        ),
        Field("plan", "Plan", kind="choice", choices=plans, initial=plan),
        *limit_rate_fields(limits, fallback),
    ]


def plan_fields(
    initial: dict[str, Any] | None = None, limits: dict[str, str] | None = None
) -> list[Field]:
    """A plan's form; `initial` holds the current values as the fields show them."""
    values = initial or {}
    return [
        Field("name", "Name", required=True, placeholder="Pro", initial=values.get("name", "")),
        Field(
            "external_id",
            "External id",
            placeholder="the id your app uses (optional)",
            initial=values.get("external_id", ""),
        ),
        Field(
            "monthly_budget_usd",
            "Monthly budget",
            kind="usd",
            placeholder="USD of cost per month; blank = no cap",
            initial=values.get("monthly_budget_usd", ""),
        ),
        Field(
            "markup",
            "Markup",
            kind="decimal",
            placeholder="price = cost x markup; blank = default",
            initial=values.get("markup", ""),
        ),
        Field(
            "low_balance_threshold_usd",
            "Low-balance alert",
            kind="usd",
            placeholder="USD; wallet.low fires below it",
            initial=values.get("low_balance_threshold_usd", ""),
        ),
        Field("prepaid", "Prepaid wallet", kind="bool", initial=bool(values.get("prepaid"))),
        Field(
            "allowed_models",
            "Allowed models",
            kind="list",
            placeholder="openai/*, anthropic/claude-*; blank = all",
            initial=values.get("allowed_models", ""),
        ),
        *limit_rate_fields(limits),
    ]


def topup_fields() -> list[Field]:
    return [
        Field("amount_usd", "Amount", kind="usd", required=True, placeholder="USD, e.g. 25.00"),
        Field("description", "Description", placeholder="optional, shown in the history"),
    ]


# What each key kind may call (docs/api.md, "Authentication").
KEY_KIND_HELP: dict[str, str] = {
    "app": "Calls the proxy routes only",
    "read": "Reads the management API (no keys); never the proxy",
    "billing": "Reads, and writes customers, top-ups and plans",
    "admin": "Everything, the proxy and keys included",
}
KEY_KIND_CHOICES: Choices = (
    ("app: proxy calls only", "app"),
    ("read: read the management API", "read"),
    ("billing: read + customers, top-ups, plans", "billing"),
    ("admin: everything", "admin"),
)


def key_fields() -> list[Field]:
    return [
        Field("name", "Key name", required=True, placeholder="production backend"),
        Field(
            "kind",
            "Kind",
            kind="choice",
            choices=KEY_KIND_CHOICES,
            initial="app",
            blank_choice=None,
        ),
        Field(
            "expires_at",
            "Expires",
            kind="expiry",
            placeholder="blank = never; 90d, 12h or 2027-01-01 (UTC)",
        ),
    ]
