"""The SPA shows the account's generated AWS external id and trust policy where a role is
connected, and asks for no external id (Switchyard generates it)."""

from __future__ import annotations

from tests.web.test_spa import api, google, mailchimp, page, signed_in, stack  # noqa: F401  (fixtures)

from playwright.sync_api import Page, expect  # noqa: E402  (after the requires check in test_spa)


def test_new_role_authorization_shows_the_external_id_and_trust_policy(page: Page, stack) -> None:  # noqa: F811
    signed_in(page, stack)
    trust = api(stack, "GET", "/account/aws-trust")
    page.goto(stack.base + "/#/authorizations/new")
    page.locator("#na-provider").select_option("amazon_s3")
    # GIVEN access keys (the positive control): no trust panel
    page.locator("#na-method").select_option("access_keys")
    expect(page.locator("#na-cred-secret_access_key")).to_be_visible()
    expect(page.get_by_test_id("aws-trust")).to_have_count(0)
    # WHEN the assume-role method is chosen
    page.locator("#na-method").select_option("assume_role")
    # THEN the account's external id and a trust policy requiring it are shown
    expect(page.get_by_test_id("aws-external-id")).to_have_text(trust["external_id"])
    expect(page.get_by_test_id("aws-trust")).to_contain_text('"sts:ExternalId"')
    # AND the form asks for the role, never for an external id
    expect(page.locator("#na-cred-role_arn")).to_be_visible()
    expect(page.locator("#na-cred-external_id")).to_have_count(0)
