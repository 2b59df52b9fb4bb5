"""The links of the page header: the main navigation and the user menu, registered per registration.

``reg.extension(Navigation).add("Organizations", "/organizations")`` in ``ui.include`` adds a link for
signed-in users; ``who="superuser"`` shows it to superusers only; ``menu="user"`` puts it in the user
menu (account settings) instead of the main navigation. Links show in the order they are added.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavLink:
    label: str
    href: str
    who: str = "user"  # user | superuser
    menu: str = "main"  # main | user


class Navigation:
    def __init__(self):
        self.links: list[NavLink] = []

    def add(self, label: str, href: str, who: str = "user", menu: str = "main") -> None:
        if who not in ("user", "superuser") or menu not in ("main", "user"):
            raise ValueError(f"bad navigation link {label}: who={who} menu={menu}")
        self.links.append(NavLink(label, href, who, menu))

    def for_identity(self, identity, menu: str) -> list[NavLink]:
        if identity.anonymous:
            return []
        return [link for link in self.links
                if link.menu == menu and (link.who == "user" or identity.superuser)]
