"""The home page (the repository list when signed in, a sign-in prompt and the help otherwise),
creating a repository, and the 404 page for paths that name no page."""
from __future__ import annotations

from accounts import orgs, users
from accounts.permissions import can_create_in
from registry import permissions, repos
from registry.models import PRIVATE, PUBLIC
from slipway import __version__
from slipway.errors import DomainError

from .web import UiHandler

REPOS_PER_PAGE = 50


class HomeHandler(UiHandler):
    """``/``: the repositories the user can see (search ``?q=``, next page ``?after=<full name>``)."""

    async def get(self) -> None:
        if not self.signed_in:
            self.render("home_anonymous.html", host=self.request.host, version=__version__)
            return
        await self.show_list()

    async def show_list(self, status: int = 200, values: dict | None = None, errors: dict | None = None) -> None:
        query = self.get_argument("q", "").strip().lower()[:255]
        after = self.get_argument("after", "")[:600]
        names = await self.in_thread(permissions.visible_repositories, self.identity, after, REPOS_PER_PAGE + 1,
                                     None, query)
        page_names = names[:REPOS_PER_PAGE]
        rows = await self.in_thread(repos.by_names, page_names)
        listed = [rows[n] for n in page_names if n in rows]
        pushed = await self.in_thread(repos.last_pushed, [r.id for r in listed])
        self.render("repositories.html", status=status, repositories=listed, last_pushed=pushed, query=query,
                    after=after, next_after=page_names[-1] if len(names) > REPOS_PER_PAGE else None,
                    namespaces=await self.in_thread(self.creatable_namespaces), values=values or {},
                    errors=errors or {})

    def creatable_namespaces(self) -> list[str]:
        """The user's own namespace and the organizations they may create repositories in."""
        me = users.get_account(self.identity.account_id)
        return [me.name] + [org.name for org in orgs.organizations_of(me) if can_create_in(self.identity, org)]


class CreateRepositoryHandler(HomeHandler):
    """``POST /repository/new``: the API's ``repos.create_repository`` from a form."""

    login_required = True

    async def get(self) -> None:
        self.redirect("/#create")

    async def post(self) -> None:
        values = {"namespace": self.form("namespace") or self.identity.name, "name": self.form("name"),
                  "visibility": self.form("visibility", PRIVATE), "description": self.get_body_argument(
                      "description", "")}
        errors = {}
        if not values["name"]:
            errors["name"] = "Enter a name for the repository"
        elif values["visibility"] not in (PUBLIC, PRIVATE):
            errors["visibility"] = "Choose public or private"
        else:
            try:
                repo = await self.in_thread(repos.create_repository, values["namespace"], values["name"],
                                            self.identity, values["visibility"], values["description"],
                                            self.client_ip)
            except DomainError as e:
                errors["namespace" if "namespace" in e.message.lower() else "name"] = e.message
            else:
                self.flash(f"Repository {repo.full_name} created.", "success")
                self.redirect(f"/repository/{repo.full_name}")
                return
        await self.show_list(status=400, values=values, errors=errors)


class NotFoundHandler(UiHandler):
    """Any path that names no page (and no API or registry route): the 404 page."""

    async def prepare(self) -> None:
        await super().prepare()
        raise self.not_found(f"There is no page at {self.request.path}")


default_handlers = [
    (r"/", HomeHandler),
    (r"/repository/new/?", CreateRepositoryHandler),
]
fallback_handlers = [(r"/(?!api/|v2/|v1/|static/)(.*)", NotFoundHandler)]
