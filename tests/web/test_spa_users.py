"""An admin changes a user's role and disables a user from the tokens page, each after a
confirmation; a refusal of the API is shown in its plain words."""

from __future__ import annotations

from tests.web import axe
from tests.web import test_spa as spa
from tests.web.helpers import Browser, Page, api, expect, signed_in, signed_in_as
from tests.web.test_spa import assert_accessible

# test_spa.py's stack (with its fakes), and the module's own signed-in page.
mailchimp, google, stack, page = spa.mailchimp, spa.google, spa.stack, spa.page


def _user(stack, name: str, role: str) -> tuple[dict, str]:
    user = api(stack, "POST", "/users", {"email": f"{name.lower()}@demo.example", "name": name, "role": role})
    token = api(stack, "POST", "/tokens", {"label": f"{name} script", "user_id": user["id"]})["token"]
    return user, token


def _role_of(stack, token: str) -> tuple[int, str | None]:
    status, out = stack.call("GET", "/api/v1/me", token=token)
    return status, (out.get("data") or {}).get("role") if status == 200 else None


def test_admin_changes_a_role_and_disables_a_user_after_confirming(page: Page, stack) -> None:
    user, token = _user(stack, "Dana", "observer")
    signed_in(page, stack)
    page.reload()
    row = page.get_by_role("region", name="Users").locator("tr", has_text="dana@demo.example")
    expect(row).to_contain_text("active")
    role = page.get_by_label("Role of Dana")
    # GIVEN a new role chosen, then cancelled: nothing changes (the select shows the old role)
    role.select_option("data_manager")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Change Dana's role to data manager?")
    axe.check(page, "users-change-role")
    dialog.get_by_role("button", name="Cancel").click()
    expect(role).to_have_value("observer")
    assert _role_of(stack, token) == (200, "observer")
    # WHEN it is chosen and confirmed
    role.select_option("data_manager")
    page.get_by_role("dialog").get_by_role("button", name="Change role").click()
    # THEN the user and their existing token act with the new role
    expect(page.get_by_test_id("user-change-done")).to_have_text("Dana is now data manager.")
    expect(role).to_have_value("data_manager")
    # AND the tokens list says so too (the role the token now acts with)
    expect(page.locator("tr", has_text="Dana script")).to_contain_text("data_manager")
    assert _role_of(stack, token) == (200, "data_manager")
    # WHEN Dana is disabled, after a confirmation naming what happens to their token
    page.get_by_role("button", name="Disable Dana").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Their 1 token(s) stop working")
    dialog.get_by_role("button", name="Disable user").click()
    # THEN the row says so, the token is gone from the list, and it no longer works
    expect(page.get_by_test_id("user-change-done")).to_have_text("Dana is disabled; their tokens are revoked.")
    expect(row).to_contain_text("disabled")
    expect(page.locator("tr", has_text="Dana script")).to_have_count(0)
    assert _role_of(stack, token)[0] == 401
    assert [u["disabled"] for u in api(stack, "GET", "/users") if u["id"] == user["id"]] == [True]
    assert_accessible(page)


def test_a_refusal_is_shown_in_plain_words_and_changes_nothing(browser: Browser, stack) -> None:
    # GIVEN a second admin signed in, and a user they will try to change
    _, bea = _user(stack, "Bea", "admin")
    target, target_token = _user(stack, "Eli", "observer")
    with signed_in_as(browser, stack, bea, "admin") as pg:
        pg.goto(stack.base + "/#/tokens")
        expect(pg.get_by_label("Role of Eli")).to_have_value("observer")
        # The tokens table above the users has its answer too, so nothing moves the button
        expect(pg.locator("tr", has_text="Eli script")).to_be_visible()
        # WHEN another admin makes Bea an observer meanwhile, and Bea tries to disable Eli
        bea_user = [u for u in api(stack, "GET", "/users") if u["email"] == "bea@demo.example"][0]
        api(stack, "PATCH", f"/users/{bea_user['id']}", {"role": "observer"})
        pg.get_by_role("button", name="Disable Eli").click()
        pg.get_by_role("dialog").get_by_role("button", name="Disable user").click()
        # THEN the API's refusal is shown in words, and Eli is untouched
        alert = pg.get_by_role("alert")
        expect(alert).to_contain_text("role")
        assert "{" not in alert.inner_text()
        expect(pg.get_by_test_id("user-change-done")).to_have_count(0)
        assert _role_of(stack, target_token) == (200, "observer")
        assert [u["disabled"] for u in api(stack, "GET", "/users") if u["id"] == target["id"]] == [False]
        axe.check(pg, "users-refused")
