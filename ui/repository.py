"""The repository page's frame: finding the repository a URL names, and its tabs.

``/repository/<namespace>/<name>?tab=<tab>`` shows one tab. Tabs are registered per registration
(``reg.extension(RepositoryTabs).add(tab)`` in ``ui.include``), so a new tab is a class in a module of
its own: ``name``, ``label``, ``role`` (read | write | admin: who sees it), ``async get(page, repo,
errors=None, values=None)`` which ends with ``page.render_tab(template, **context)``, and ``async
do_<action>(page, repo)`` for each of its forms (posted to the tab's own URL with an ``action`` field;
CSRF is checked before any of it runs). Pages with a path of their own under a repository (the build
page) subclass ``RepositoryHandler`` and route ``REPO_PATH + "/build/..."``.
"""
from __future__ import annotations

from registry import repos
from registry.names import COMPONENT
from registry.permissions import can
from slipway.errors import DomainError, Forbidden, Invalid, Unauthenticated

from .web import CSRF_FIELD, UiHandler

NAME = r"[^/]+"
SEGMENT = rf"(?!(?:build|trigger|tag)(?:/|$)){COMPONENT}"
#: ``/repository/<namespace>/<repository>``, with the API's rule for multi-segment names.
REPO_PATH = rf"/repository/(?P<namespace>{NAME})/(?P<repository>(?:{SEGMENT}/)*?{SEGMENT})"


class RepositoryTab:
    """One tab. ``get`` renders it (``page.render_tab``); forms post to the tab's URL with an ``action``
    field, which ``post`` dispatches to ``async do_<action>(page, repo)``. An action that fails with a
    ``DomainError`` shows the tab again (400) with ``errors={"<key>": message}`` where ``<key>`` is the
    form's ``error_key`` field (or ``form``), and ``values`` the form's fields; one that succeeds flashes
    its message and redirects back to the tab (post/redirect/get), or redirects itself."""

    name = ""
    label = ""
    role = "read"

    async def get(self, page: "RepositoryPage", repo, errors: dict | None = None, values: dict | None = None) -> None:
        raise NotImplementedError

    async def post(self, page: "RepositoryPage", repo) -> None:
        action = page.form("action")
        handler = getattr(self, f"do_{action}", None) if action.isidentifier() else None
        if handler is None:
            raise Invalid(f"The {self.label} tab has no action '{action[:40]}'")
        try:
            message = await handler(page, repo)
        except (Forbidden, Unauthenticated):
            raise  # the 403 page, not a form error
        except DomainError as e:
            values = {k: v[-1].decode("utf-8", "replace") for k, v in page.request.body_arguments.items()
                      if k != CSRF_FIELD}
            await self.get(page, repo, errors={page.form("error_key") or "form": e.message}, values=values)
            return
        if message:
            page.flash(message, "success")
        if not page._finished:
            page.redirect(page.url_with(manage=None))  # (a row opened for editing, ?manage=, is closed)


class RepositoryTabs:
    """The tabs of the repository page, in order (a registration's extension)."""

    def __init__(self):
        self.tabs: dict[str, RepositoryTab] = {}

    def add(self, tab: RepositoryTab) -> None:
        if tab.name in self.tabs:
            raise RuntimeError(f"the repository tab {tab.name} is registered twice")
        self.tabs[tab.name] = tab


class RepositoryHandler(UiHandler):
    """Base of pages under ``/repository/<ns>/<name>``: ``self.repository(action)`` is the repository if
    the user may ``action`` it (read | write | admin), else the 404 page (no access and not there look
    the same to those who cannot read it) or the 403 page (can read, may not do this)."""

    def repository(self, action: str = "read"):
        full = f"{self.path_kwargs['namespace']}/{self.path_kwargs['repository']}"
        repo = repos.lookup(full)
        if repo is None or not can(self.identity, "read", repo):
            if self.identity.anonymous:
                raise self.not_found(f"There is no repository {full}, or it is private: sign in to see it")
            raise self.not_found(f"There is no repository {full}, or you have no access to it")
        if not can(self.identity, action, repo):
            raise self.forbidden(f"You need the {action} role on {full} for this")
        return repo

    def repo_url(self, repo, tab: str | None = None) -> str:
        return f"/repository/{repo.full_name}" + (f"?tab={tab}" if tab and tab != "info" else "")

    def can(self, action: str, repo) -> bool:
        return can(self.identity, action, repo)


class RepositoryPage(RepositoryHandler):
    """``/repository/<ns>/<name>?tab=...``: the frame (header, tab bar) around one registered tab."""

    def tabs(self) -> RepositoryTabs:
        return self.services.registration.extension(RepositoryTabs)

    def current_tab(self, repo) -> RepositoryTab:
        name = self.get_argument("tab", "info") or "info"
        tab = self.tabs().tabs.get(name)
        if tab is None:
            raise self.not_found(f"The repository page has no tab '{name}'")
        if not can(self.identity, tab.role, repo):
            raise self.forbidden(f"The {tab.label} tab of {repo.full_name} needs the {tab.role} role")
        return tab

    async def get(self, namespace: str, repository: str) -> None:
        repo = self.repository("read")
        self._repo = repo
        self._tab = self.current_tab(repo)
        await self._tab.get(self, repo)

    async def post(self, namespace: str, repository: str) -> None:
        repo = self.repository("read")
        self._repo = repo
        self._tab = self.current_tab(repo)
        await self._tab.post(self, repo)

    def render_tab(self, template: str, status: int | None = None, **context) -> None:
        """Render the tab's template inside the frame; status 400 when it shows form errors."""
        if status is None:
            status = 400 if context.get("errors") else 200
        context.setdefault("errors", {})
        context.setdefault("values", {})
        repo, current = self._repo, self._tab
        visible = [t for t in self.tabs().tabs.values() if can(self.identity, t.role, repo)]
        self.render(template, status=status, repo=repo, tabs=visible, tab=current, repo_path=self.repo_url(repo),
                    repo_url=lambda tab=None: self.repo_url(repo, tab),
                    can_write=can(self.identity, "write", repo), can_admin=can(self.identity, "admin", repo),
                    **context)
