"""The repository list and a repository's pages (information, tags, tag history, settings) in a real browser."""
import calendar
import json
import time

import pytest
import requests

from tests.api import Api
from tests.conftest import ADMIN_PASSWORD, wait_for
from tests.images import make_oci_layout
from tests.ui.conftest import create_user

CREDS = f"admin:{ADMIN_PASSWORD}"
SCRIPT_DESCRIPTION = "# Web app\n\n<script>window.__owned = 1</script>\n\n**bold** [docs](https://example.com)"


@pytest.fixture(scope="module")
def admin(server):
    return Api(server, auth=("admin", ADMIN_PASSWORD))


@pytest.fixture(scope="module")
def pushed(server, admin, tmp_path_factory):
    """admin/web (public) with tag v1 pushed by skopeo; returns v1's manifest digest."""
    from tests.conftest import ContainerTools

    admin.ok("POST", "/repository", {"namespace": "admin", "repository": "web", "visibility": "public",
                                     "description": SCRIPT_DESCRIPTION})
    base = tmp_path_factory.mktemp("containers")
    tools = ContainerTools(base, server.host)
    image = make_oci_layout(base / "image", labels={"org.example.team": "web"})
    tools.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", CREDS, f"oci:{base / 'image'}:latest",
                 f"docker://{server.host}/admin/web:v1")
    return image["manifest_digest"]


def tag_names(page) -> list[str]:
    return [row.get_attribute("data-tag") for row in page.find_all("#tags tbody tr")]


def test_create_a_repository_in_the_page(page, server, admin, screenshot):
    page.sign_in()
    page.submit("form[action='/repository/new']", name="made-in-page", visibility="public",
                description="Made **here**")
    assert page.path == "/repository/admin/made-in-page"
    page.wait_text(".flash", "Repository admin/made-in-page created.")
    assert page.find("#description strong").text == "here"
    assert admin.ok("GET", "/repository/admin/made-in-page")["is_public"] is True
    # it is listed on the home page, with its visibility
    page.open("/")
    row = page.find("#repositories a[href='/repository/admin/made-in-page']").find_element("xpath", "../..")
    assert "public" in row.text
    # a bad name is said next to the name field, and the form keeps what was typed
    page.submit("form[action='/repository/new']", name="Bad Name!", description="kept")
    assert "invalid repository name" in page.text("#e-name").lower()
    assert page.find("#f-description").get_attribute("value") == "kept"


def test_a_pushed_tag_appears_on_the_tags_tab(page, pushed, screenshot):
    page.sign_in()
    page.open("/repository/admin/web?tab=tags")
    assert "v1" in tag_names(page)
    row = page.find("#tag-v1")
    assert pushed[:19] in row.text or pushed[7:19] in row.text
    assert "org.example.team=web" in row.text  # the image's label
    assert "KiB" in row.find_element("css selector", "td.num").text
    link = row.find_element("css selector", "td.security a").get_attribute("href")
    assert link.endswith(f"/repository/admin/web/manifest/{pushed}")
    screenshot(page, "tags")


def test_the_description_is_markdown_and_a_script_in_it_is_shown_as_text(page, pushed, screenshot):
    page.open("/repository/admin/web")  # public: readable signed out
    description = page.find("#description")
    assert "<script>window.__owned = 1</script>" in description.text
    assert description.find_elements("css selector", "script") == []
    assert page.driver.execute_script("return window.__owned === undefined")
    assert description.find_element("css selector", "h1").text == "Web app"
    assert description.find_element("css selector", "a").get_attribute("href") == "https://example.com/"
    assert f"podman pull {page.server.host}/admin/web" in page.text("main")
    screenshot(page, "repository")
    screenshot(page, "repository-phone", width=420)


def test_the_information_tab_charts_pushes_and_pulls(page, pushed, server):
    token = server.token("repository:admin/web:pull")
    r = server.v2("GET", "/v2/admin/web/manifests/v1", token=token,
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200
    page.open("/repository/admin/web")

    def counted():
        page.open("/repository/admin/web")
        return page.find_all("#activity rect.pull") and page.find_all("#activity rect.push")
    wait_for(counted, 15, "the pull and the push in the chart", interval=0.3)
    assert "1 pull" in page.text(".legend") and "1 push" in page.text(".legend")


def test_set_and_clear_an_expiry_from_the_tags_tab(page, pushed, admin):
    page.sign_in()
    page.open("/repository/admin/web?tab=tags")
    page.click("#tag-v1 a.manage")
    when = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3 * 86400))
    field = page.find("#exp-v1")
    page.driver.execute_script("arguments[0].value = arguments[1]", field, when)
    page.click("#tag-v1 .expiry-form button[type=submit]:not([name])")
    page.wait_text(".flash", "Expiry of v1 set.")
    assert when.replace("T", " ") in page.text("#tag-v1 td.expires")
    tag = admin.ok("GET", "/repository/admin/web/tag/?specificTag=v1&onlyActiveTags=true")["tags"][0]
    assert tag["end_ts"] == calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M"))
    page.click("#tag-v1 a.manage")
    page.submit("#tag-v1 .expiry-form", expires="")  # the first submit button: "Set expiry" without a date
    assert page.text("#e-exp-v1") == "Choose when the tag expires"
    page.click("#tag-v1 .expiry-form button[name=clear]")
    page.wait_text(".flash", "v1 no longer expires")
    assert "never" in page.text("#tag-v1 td.expires")


def test_delete_a_tag_then_restore_it_from_the_history(page, pushed, admin, screenshot):
    page.sign_in()
    page.open("/repository/admin/web?tab=tags")
    page.click("#tag-v1 a.manage")
    page.find("#tag-v1 .retag-form input[name=new_tag]").send_keys("gone")
    page.click("#tag-v1 .retag-form button")
    assert {"v1", "gone"} <= set(tag_names(page))
    page.click("#tag-gone a.manage")
    page.click("#tag-gone .delete-form button", accept_confirm=True)  # "Delete tag gone? ..."
    page.wait_text(".flash", "Tag gone deleted")
    assert "gone" not in tag_names(page) and "v1" in tag_names(page)
    page.open("/repository/admin/web?tab=history")
    deleted = page.find("#history li[data-tag='gone'][data-kind='deleted']")
    assert "was deleted" in deleted.text
    screenshot(page, "tag-history")
    page.click("#history li[data-tag='gone'][data-kind='deleted'] .restore-form button")
    page.wait_text(".flash", "Tag gone points at")
    page.open("/repository/admin/web?tab=tags")
    assert {"v1", "gone"} <= set(tag_names(page))
    assert admin.ok("GET", "/repository/admin/web/tag/?specificTag=gone&onlyActiveTags=true")["tags"]


def test_a_multi_arch_index_shows_its_platforms(page, pushed, server):
    manifest = server.v2("GET", "/v2/admin/web/manifests/v1", token=server.token("repository:admin/web:pull"),
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    child = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": pushed,
             "size": len(manifest.content)}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {**child, "platform": {"os": "linux", "architecture": "amd64"}},
        {**child, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}
    r = server.v2("PUT", "/v2/admin/web/manifests/multi", token=server.token("repository:admin/web:push,pull"),
                  data=json.dumps(index), headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    page.open("/repository/admin/web?tab=tags")
    platforms = page.text("#tag-multi .platforms")
    assert "linux/amd64" in platforms and "linux/arm64/v8" in platforms


def test_the_tags_tab_pages_by_100(page, pushed, admin):
    admin.ok("POST", "/repository", {"namespace": "admin", "repository": "many", "visibility": "private"})
    server = page.server
    token = server.token("repository:admin/web:pull")
    raw = server.v2("GET", "/v2/admin/web/manifests/v1", token=token,
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).content
    push = server.token("repository:admin/many:push,pull")
    for blob in json.loads(raw)["layers"] + [json.loads(raw)["config"]]:
        data = server.v2("GET", f"/v2/admin/web/blobs/{blob['digest']}", token=token, allow_redirects=True).content
        r = server.v2("POST", f"/v2/admin/many/blobs/uploads/?digest={blob['digest']}", token=push, data=data)
        assert r.status_code == 201, r.text
    session = requests.Session()
    for i in range(101):
        r = session.put(f"{server.url}/v2/admin/many/manifests/t{i:03d}", data=raw, timeout=30,
                        headers={"Authorization": f"Bearer {push}",
                                 "Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 201, r.text
    page.sign_in()
    page.open("/repository/admin/many?tab=tags")
    assert len(tag_names(page)) == 100
    page.click(".pager a[rel=next]")
    assert "page=2" in page.path
    assert len(tag_names(page)) == 1


def test_settings_change_visibility_grant_a_role_and_delete_with_confirmation(page, server, admin, screenshot):
    admin.ok("POST", "/repository", {"namespace": "admin", "repository": "doomed", "visibility": "private"})
    create_user(server, "helper", "helper-password-1")
    page.sign_in()
    page.open("/repository/admin/doomed?tab=settings")
    page.submit("#visibility form")
    page.wait_text(".flash", "admin/doomed is now public")
    page.submit("#grant-user", username="nobody-here")
    assert "does not exist" in page.text("#e-username")
    page.submit("#grant-user", username="helper", role="write")
    page.wait_text(".flash", "helper has the write role")
    assert admin.ok("GET", "/repository/admin/doomed/permissions/user/helper")["role"] == "write"
    screenshot(page, "settings")
    page.submit("#delete-form", confirm="admin/wrong")
    assert page.text("#e-confirm") == "Type admin/doomed to confirm the deletion"
    assert admin.get("/repository/admin/doomed").status_code == 200
    page.submit("#delete-form", confirm="admin/doomed")
    assert page.path == "/"
    page.wait_text(".flash", "Repository admin/doomed deleted.")
    assert admin.get("/repository/admin/doomed").status_code == 404


def test_a_user_without_access_sees_404_and_403_pages_not_data(page, server, admin, pushed):
    admin.ok("POST", "/repository", {"namespace": "admin", "repository": "secret", "visibility": "private",
                                     "description": "TOP-SECRET-TEXT"})
    create_user(server, "outsider", "outsider-password-1")
    page.sign_in("outsider", "outsider-password-1")
    for tab in ("", "?tab=tags", "?tab=history", "?tab=settings"):
        page.open(f"/repository/admin/secret{tab}")
        assert "404" in page.text("h1") and "TOP-SECRET-TEXT" not in page.driver.page_source
    # a public repository: readable, but its settings are the 403 page, and the tags have no controls
    page.open("/repository/admin/web?tab=settings")
    assert "403" in page.text("h1") and "needs the admin role" in page.text("main")
    page.open("/repository/admin/web?tab=tags")
    assert tag_names(page) and not page.exists(".manage")
    assert "Settings" not in page.text("nav.tabs")
    # a forged post to a tab it cannot write is refused with the 403 page
    cookie = page.cookie("slipway_session")["value"]
    token = page.find("input[name='_csrf']").get_attribute("value") if page.exists("input[name='_csrf']") else None
    r = requests.post(f"{server.url}/repository/admin/web?tab=tags", cookies={"slipway_session": cookie},
                      data={"_csrf": token, "action": "delete", "tag": "v1"}, timeout=10, allow_redirects=False)
    assert r.status_code == 403
    assert admin.ok("GET", "/repository/admin/web/tag/?specificTag=v1&onlyActiveTags=true")["tags"]
    # the home page lists only what the user may see
    page.open("/")
    listed = [a.text for a in page.find_all("#repositories tbody a")]
    assert "admin/web" in listed and "admin/secret" not in listed


def test_the_repository_list_searches(page, admin, screenshot):
    admin.ok("POST", "/repository", {"namespace": "admin", "repository": "findme-list", "visibility": "private"})
    page.sign_in()
    screenshot(page, "repositories")
    page.open("/?q=findme")
    assert [a.text for a in page.find_all("#repositories tbody a")] == ["admin/findme-list"]
    page.open("/?q=zzz-nothing")
    assert "No repository you can see matches" in page.text("main")


def test_settings_grant_and_remove_a_team_role_in_an_organization(page, admin):
    admin.ok("POST", "/organization/", {"name": "acme"})
    admin.ok("POST", "/repository", {"namespace": "acme", "repository": "app", "visibility": "private"})
    page.sign_in()
    page.open("/repository/acme/app?tab=settings")
    page.submit("#grant-team", team="owners", role="write")
    page.wait_text(".flash", "Team owners has the write role on acme/app.")
    assert "write" in page.text("#team-permissions tr[data-team='owners']")
    assert admin.ok("GET", "/repository/acme/app/permissions/team/owners")["role"] == "write"
    page.click("#team-permissions tr[data-team='owners'] button")
    page.wait_text(".flash", "Team owners no longer has a role on acme/app.")
    assert not page.exists("#team-permissions tr[data-team='owners']")
    # the create form offers the organization as a namespace
    page.open("/")
    options = [o.get_attribute("value") for o in page.find_all("#f-namespace option")]
    assert options[0] == "admin" and "acme" in options
