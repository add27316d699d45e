"""The page in a real headless browser against a real `kotune serve` (the tiny menu adapter on
the in-process engine): Debian's chromium driven by Selenium through /usr/bin/chromedriver (no
browser download). Two users sign up, chat with streamed answers, reload, log out and in, and
see nothing of each other's; markup typed in never runs.

KOTUNE_SCREENSHOTS=docs pytest tests/serving/test_browser.py  # also writes the README's pictures
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import unique_name

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-background-networking",  # no calls home: the machine has no network
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
HOSTILE = "<img src=x onerror=\"window.__pwned='img'\"><script>window.__pwned='script'</script>"

NEEDS_CHROMIUM = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
pytestmark = NEEDS_CHROMIUM


def start_chromium(profile: Path):
    """Debian's headless Chromium through /usr/bin/chromedriver, offline, with its own profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,860"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "profile")
    yield driver
    driver.quit()


def wait(driver, condition, timeout_s=20.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
        except Exception:  # an element replaced while read: try again
            value = None
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}; page: {driver.current_url}")


def by_testid(driver, testid):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def messages(driver):
    return [
        (m.get_attribute("data-role"), m.find_element("css selector", ".bubble").text)
        for m in by_testid(driver, "message")
    ]


def sign_up(driver, url, username, password="correct horse battery"):
    driver.get(f"{url}/signup")
    by_testid(driver, "signup-username")[0].send_keys(username)
    by_testid(driver, "signup-password")[0].send_keys(password)
    by_testid(driver, "signup-submit")[0].click()
    wait(driver, lambda d: by_testid(d, "message-input"), what="the chat page")


def log_in(driver, url, username, password="correct horse battery"):
    driver.get(f"{url}/")
    wait(driver, lambda d: d.current_url.endswith("/login"), what="the log-in page")
    by_testid(driver, "login-username")[0].send_keys(username)
    by_testid(driver, "login-password")[0].send_keys(password)
    by_testid(driver, "login-submit")[0].click()
    wait(driver, lambda d: by_testid(d, "message-input"), what="the chat page")


def send(driver, text):
    from selenium.webdriver.common.keys import Keys

    box = by_testid(driver, "message-input")[0]
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def answered(driver, count):
    """The `count`-th answer once finished (no longer busy), as text."""

    def done(d):
        answers = [
            m for m in by_testid(d, "message") if m.get_attribute("data-role") == "assistant"
        ]
        if len(answers) >= count and answers[count - 1].get_attribute("aria-busy") is None:
            return answers[count - 1].find_element("css selector", ".bubble").text or None
        return None

    return wait(driver, done, what=f"answer {count}")


# The pieces the page appended to the newest answer, one text node per streamed piece. The tiny
# model writes a whole answer in ~30 ms, usually one network read, so the test counts pieces
# rendered rather than watching the text grow; test_web_flows.py checks, over HTTP on the live
# server, that the pieces leave it as separate events with the first before the end.
PIECES = """
const answers = document.querySelectorAll('[data-testid="message"][data-role="assistant"]');
return answers[answers.length - 1].querySelector('.bubble').childNodes.length;
"""


def screenshot(driver, name, tmp_path):
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    target = os.environ.get("KOTUNE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


@pytest.mark.slow
def test_two_users_chat_reload_and_see_only_their_own(browser, live, tmp_path):
    from selenium.webdriver.common.keys import Keys

    url = live.url
    minji, junho = unique_name("민지"), unique_name("junho")
    # logged out: / goes to the log-in page
    browser.get(f"{url}/")
    wait(browser, lambda d: d.current_url == f"{url}/login", what="redirect to /login")
    sign_up(browser, url, minji)
    assert browser.current_url == f"{url}/"
    assert "메뉴 추천 도우미" in browser.find_element("css selector", ".persona h1").text

    # the answer streams in, piece by piece, from the engine in the server
    send(browser, "매운 건 못 먹어요. 저녁 메뉴 추천해 줘")
    first = answered(browser, 1)
    assert first.strip() and any("가" <= c <= "힣" for c in first)  # the tiny model's Korean
    assert browser.execute_script(PIECES) >= 2

    # the preference panel shows what was read
    prefs = wait(browser, lambda d: by_testid(d, "preference"), what="a preference")
    assert "매운 것" in prefs[0].text and "못 먹음" in prefs[0].text

    # Shift+Enter is a new line, Enter sends
    box = by_testid(browser, "message-input")[0]
    box.send_keys("첫 줄")
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("둘째 줄")
    assert box.get_attribute("value") == "첫 줄\n둘째 줄"
    assert len(messages(browser)) == 2  # nothing sent yet
    box.send_keys(Keys.ENTER)
    answered(browser, 2)
    assert messages(browser)[2] == ("user", "첫 줄\n둘째 줄")
    screenshot(browser, "web-chat.png", tmp_path)

    # markup typed in is shown as text, never run
    send(browser, HOSTILE)
    answered(browser, 3)
    assert messages(browser)[4] == ("user", HOSTILE)
    assert browser.execute_script("return window.__pwned === undefined")
    assert not browser.find_elements("css selector", ".messages img, .messages script")

    # reload: the conversation is still there
    before = messages(browser)
    browser.refresh()
    wait(browser, lambda d: len(messages(d)) == 6, what="history after reload")
    assert messages(browser) == before
    assert len(by_testid(browser, "conversation")) == 1

    # a new conversation, then the first one again from the list
    by_testid(browser, "new-conversation")[0].click()
    wait(browser, lambda d: not messages(d), what="an empty conversation")
    send(browser, "오이는 싫어요")
    answered(browser, 1)
    wait(browser, lambda d: len(by_testid(d, "conversation")) == 2, what="two conversations")
    items = by_testid(browser, "conversation")
    first_item = next(i for i in items if i.text.startswith("매운 건"))
    first_item.click()
    wait(browser, lambda d: len(messages(d)) == 6, what="the first conversation reopened")
    assert messages(browser)[0] == ("user", "매운 건 못 먹어요. 저녁 메뉴 추천해 줘")

    # a preference removed from the panel
    wait(browser, lambda d: len(by_testid(d, "preference")) == 2, what="two preferences")
    cucumber = next(p for p in by_testid(browser, "preference") if "오이" in p.text)
    cucumber.find_element("css selector", "button").click()
    wait(browser, lambda d: len(by_testid(d, "preference")) == 1, what="one preference left")
    minji_conversation = browser.current_url.split("?c=")[1]

    # phone width: readable, nothing wider than the screen
    browser.set_window_size(390, 844)
    browser.refresh()
    wait(browser, lambda d: len(messages(d)) == 6, what="history at phone width")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    screenshot(browser, "web-chat-phone.png", tmp_path)
    browser.set_window_size(1280, 860)

    # log out; a second user sees nothing of the first's
    by_testid(browser, "logout")[0].click()
    wait(browser, lambda d: d.current_url == f"{url}/login", what="logged out")
    sign_up(browser, url, junho)
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    assert by_testid(browser, "conversation") == [] and by_testid(browser, "preference") == []
    assert messages(browser) == []
    browser.get(f"{url}/?c={minji_conversation}")  # minji's conversation id, guessed
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    assert "찾을 수 없습니다" in browser.find_element("id", "status").text
    assert messages(browser) == [] and "매운" not in browser.page_source
    by_testid(browser, "logout")[0].click()

    # minji logs in again: everything is there
    log_in(browser, url, minji)
    wait(browser, lambda d: len(by_testid(d, "conversation")) == 2, what="minji's list")
    wait(browser, lambda d: len(by_testid(d, "preference")) == 1, what="minji's preference")


def test_keyboard_and_labels_on_the_log_in_page(browser, live):
    """Every field has a label; Tab walks the form in order and Enter submits it."""
    from selenium.webdriver.common.keys import Keys

    name = unique_name("minji")
    sign_up(browser, live.url, name)
    by_testid(browser, "logout")[0].click()
    wait(browser, lambda d: d.current_url.endswith("/login"), what="the log-in page")
    for field in ("login-username", "login-password"):
        element = by_testid(browser, field)[0]
        label = browser.find_element("css selector", f'label[for="{element.get_attribute("id")}"]')
        assert label.text
    active = browser.switch_to.active_element
    assert active.get_attribute("data-testid") == "login-username"  # autofocus
    active.send_keys(name, Keys.TAB)
    active = browser.switch_to.active_element
    assert active.get_attribute("data-testid") == "login-password"
    active.send_keys("correct horse battery", Keys.ENTER)
    wait(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))
    box = browser.switch_to.active_element  # the page puts the cursor in the message box
    label = browser.find_element("css selector", 'label[for="message-input"]')
    assert box.get_attribute("data-testid") == "message-input"
    assert label.get_attribute("textContent") == "메시지"  # for screen readers only
