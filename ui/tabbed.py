"""Pages with tabs and small forms: an organization, a user's account settings, the superuser's pages.

A subclass names its ``tabs`` ((name, label, needs_admin) in order) and, per tab, ``show_<tab>()`` returning
the template context of ``<template_prefix>_<tab>.html``. Forms post to the page's URL (with its ``?tab=``)
with an ``action`` field; ``do_<action>()`` calls the service function the API calls for the same change and
returns the message to flash. A ``DomainError`` it raises re-renders the tab (400/403/404/409) with the
message next to the field ``action_fields[action]`` names (the form's own error otherwise) and the values
the user typed. ``load(**path)`` resolves what the URL names (and who may see it) before either.
"""
from __future__ import annotations

from slipway.api import quay_error
from slipway.errors import DomainError, Forbidden, NotFound

from .web import UiHandler


class TabbedPage(UiHandler):
    login_required = True
    #: (name, label, needs_admin)
    tabs: tuple = ()
    template_prefix = ""
    #: action -> the form field its error is shown next to
    action_fields: dict = {}

    def load(self, **path) -> None:
        """Resolve the page's subject from the URL; raise NotFound/Forbidden for who may not see it."""

    def is_admin(self) -> bool:
        return True

    def visible_tabs(self) -> list:
        return [t for t in self.tabs if not t[2] or self.is_admin()]

    def current_tab(self) -> str:
        name = self.get_argument("tab", "") or self.visible_tabs()[0][0]
        for tab, _, needs_admin in self.tabs:
            if tab == name:
                if needs_admin and not self.is_admin():
                    raise Forbidden(f"Only administrators see the {name} tab")
                return tab
        raise NotFound(f"This page has no tab '{name}'")

    def tab_url(self, tab: str | None = None) -> str:
        return self.request.path + (f"?tab={tab}" if tab and tab != self.visible_tabs()[0][0] else "")

    def show(self, tab: str, status: int = 200, errors: dict | None = None, values: dict | None = None,
             **extra) -> None:
        context = getattr(self, f"show_{tab}")()
        context.update(extra)
        self.render(f"{self.template_prefix}_{tab}.html", status=status, tabs=self.visible_tabs(), tab=tab,
                    tab_url=self.tab_url, errors=errors or {}, values=values or {}, **context)

    async def get(self, **path) -> None:
        self.load(**path)
        self.show(self.current_tab())

    async def post(self, **path) -> None:
        self.load(**path)
        tab = self.current_tab()
        action = self.get_body_argument("action", "")
        method = getattr(self, f"do_{action}", None) if action.isidentifier() else None
        if method is None:
            raise NotFound(f"This page has no form '{action}'")
        try:
            result = method()
            if hasattr(result, "__await__"):
                result = await result
        except DomainError as e:
            values = {k: v[-1].decode(errors="replace") for k, v in self.request.body_arguments.items()
                      if k not in ("_csrf",) and "password" not in k}
            self.show(tab, status=quay_error(e)[0], errors={self.action_fields.get(action, "form"): e.message},
                      values=values, failed_action=action)
            return
        if self._finished:  # the action answered itself (a redirect elsewhere)
            return
        if isinstance(result, tuple):  # (message, extra context): shown at once, not after a redirect
            message, extra = result
            self.flash(message, "success")
            self.show(tab, **extra)
            return
        if result:
            self.flash(result, "success")
        self.redirect(self.url_with())
