"""The UI's pages and files over plain HTTP (no browser): what the server itself promises."""

from __future__ import annotations

from metalbus.api.machines.states import TRANSITIONS, Action
from tests.api.conftest import ApiUnderTest, api  # noqa: F401

PAGES = [
    "/ui/login",
    "/ui/machines",
    "/ui/machines/abc123",
    "/ui/pods",
    "/ui/pods/7",
    "/ui/subnets",
    "/ui/discoveries",
]


async def test_pages_are_shells_that_load_only_this_origin(api: ApiUnderTest) -> None:  # noqa: F811
    for path in PAGES:
        # No token: a page holds no data, the script asks /api/v1 with the token it keeps.
        response = await api.client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy
        assert "http://" not in response.text and "https://" not in response.text
        assert '<script src="/ui/static/ui.js' in response.text


async def test_root_and_ui_redirect_and_static_files(api: ApiUnderTest) -> None:  # noqa: F811
    root = await api.client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    home = await api.client.get("/ui/")
    assert home.status_code == 307 and home.headers["location"] == "/ui/machines"
    for name, kind in (
        ("ui.js", "javascript"),
        ("ui.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ):
        response = await api.client.get(f"/ui/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert (await api.client.get("/ui/static/nope.js")).status_code == 404
    # The UI is no part of the API's description.
    paths = (await api.client.get("/api/v1/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]


async def test_machine_page_offers_the_actions_the_state_machine_allows(
    api: ApiUnderTest,  # noqa: F811
) -> None:
    page = (await api.client.get("/ui/machines/abc123")).text
    assert 'data-system-id="abc123"' in page
    for action in (Action.COMMISSION, Action.DEPLOY, Action.RELEASE, Action.ABORT):
        assert f'data-action="{action.value}"' in page
        for status in TRANSITIONS[action]:
            assert f"&#34;{status.value}&#34;" in page
    bad = await api.client.get("/ui/machines/no%20such")
    assert bad.status_code == 422 and bad.json()["field"] == "path.system_id"
    bad = await api.client.get("/ui/pods/0")
    assert bad.status_code == 422 and bad.json()["field"] == "path.pod_id"
