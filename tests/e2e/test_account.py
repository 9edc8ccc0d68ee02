"""A user's own account page: where they are signed in, their API tokens, and signing out everywhere."""

import re

from playwright.sync_api import expect
from testkit import ARTIFACTS, fill_login, forget_sign_in, save_screenshot


def test_signing_out_everywhere_ends_the_session_of_another_browser(new_context):
    desk, phone = new_context().new_page(), new_context().new_page()
    for page in (desk, phone):
        page.goto("/login")
        fill_login(page, "auditor")

    desk.goto("/account")
    expect(desk.get_by_role("heading", name="Where you are signed in")).to_be_visible()
    desk.get_by_label("Name", exact=True).fill("Front desk scanner")
    desk.get_by_role("button", name="Create token").click()
    expect(desk.locator("#new-token")).to_have_text(re.compile(r"^ct_\S{20,}$"))
    expect(desk.get_by_role("cell", name="Front desk scanner")).to_be_visible()
    save_screenshot(desk, "account")
    for width in (768, 390):  # looked at, not committed
        desk.set_viewport_size({"width": width, "height": 900})
        ARTIFACTS.mkdir(exist_ok=True)
        desk.screenshot(path=ARTIFACTS / f"account-{width}.png", full_page=True)

    desk.once("dialog", lambda dialog: dialog.accept())
    desk.get_by_role("button", name="Sign out everywhere").click()
    desk.wait_for_url(re.compile(r"/login"))
    forget_sign_in("auditor")

    phone.goto("/")  # the other browser's cookie opens nothing any more
    expect(phone).to_have_url(re.compile(r"/login"))
    expect(phone.get_by_label("Username")).to_be_visible()
