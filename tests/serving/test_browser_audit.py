"""The page as a user and an attacker meet it, in a real headless Chromium (Selenium through
/usr/bin/chromedriver), against the web app in front of the scripted model (its `[[slow]]`,
`[[fail]]` markers and its echo of the question make the failures and the hostile answers
happen on cue). One browser and one server for the module: markup in every place a user or
the model can put it stays text; failures say so and keep what the user typed; the phone
width, the keyboard and a cross-site page."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

import pytest
from conftest import PASSWORD, ServerThread, start_web, unique_name
from test_browser import NEEDS_CHROMIUM, answered, by_testid, messages, start_chromium, wait

from kotune.serving.backend import Persona

pytestmark = NEEDS_CHROMIUM

# a description long enough to take three lines at phone width: the drawer must still open
# under the top bar, not over its buttons
PERSONA = Persona(
    "메뉴 추천 도우미",
    "상황과 취향, 알레르기와 못 먹는 음식까지 기억해서 점심과 저녁, 야식 메뉴를 골라 드려요. "
    "대화에서 말한 취향은 왼쪽 목록에 모아 둡니다.",
    "당신은 메뉴 추천 도우미입니다.",
    preferences=True,
)
FLAG = "window.__pwned"
HOSTILE = (
    '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    '<svg onload="window.__pwned=3"></svg>'
)


@pytest.fixture(scope="module")
def site(scripted, tmp_path_factory):
    server, web = start_web(scripted, tmp_path_factory.mktemp("audit") / "chat.db", PERSONA)
    yield web
    server.stop()
    web.store.close()


@pytest.fixture(scope="module")
def chrome(tmp_path_factory):
    driver = start_chromium(tmp_path_factory.mktemp("profile"))
    yield driver
    driver.quit()


def ready(driver):
    wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready"))


def new_user(driver, url, display_name=""):
    driver.delete_all_cookies()
    driver.get(f"{url}/signup")
    name = unique_name("minji")
    by_testid(driver, "signup-username")[0].send_keys(name)
    if display_name:
        by_testid(driver, "signup-name")[0].send_keys(display_name)
    by_testid(driver, "signup-password")[0].send_keys(PASSWORD)
    by_testid(driver, "signup-submit")[0].click()
    ready(driver)
    return name


def type_and_enter(driver, text):
    from selenium.webdriver.common.keys import Keys

    box = by_testid(driver, "message-input")[0]
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def status(driver):
    return driver.find_element("id", "status").text


def no_script_ran(driver):
    from selenium.common.exceptions import NoAlertPresentException

    assert driver.execute_script(f"return {FLAG} === undefined"), "a script ran"
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    # nothing was parsed as markup: no element the hostile strings would make
    assert not driver.find_elements("css selector", ".app img, .app script, .app svg")


class Restartable:
    """A TCP relay in front of the app that can play a server going down (connections cut
    mid-answer, new ones refused) and coming back: what the browser sees of a restart."""

    def __init__(self, port: int):
        self.target, self.up, self.open = port, True, []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                self.reset(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    @staticmethod
    def reset(sock) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the relay's reader on it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def down(self) -> None:
        self.up = False
        for sock in self.open:
            with contextlib.suppress(OSError):
                self.reset(sock)
        self.open = []

    def close(self) -> None:
        self.down()
        self.listener.close()


def test_markup_from_users_and_the_model_is_shown_as_text(chrome, site):
    shown = '민지<img src=x onerror="window.__pwned=1">'  # sign-up keeps 100 characters
    name = new_user(chrome, site.url, display_name=shown)
    assert chrome.find_element("css selector", ".who").text == f"{shown}님"
    # a preference item holding markup (the store takes whatever the reader found)
    account = site.store.user_by_name(name)
    item = '<img src=x onerror="window.__pwned=4">'  # items are kept to 100 characters
    site.store.begin_turn(account.id, None, "예전 대화", [(item, "dislike")])
    type_and_enter(chrome, f"점심 {HOSTILE}")  # the scripted model echoes it in the answer
    answer = answered(chrome, 1)
    assert HOSTILE in answer  # the model's markup, as text
    assert messages(chrome)[0] == ("user", f"점심 {HOSTILE}")
    chrome.refresh()  # everything again, from the store
    ready(chrome)
    wait(chrome, lambda d: len(messages(d)) == 2, what="history")
    titles = [c.text for c in by_testid(chrome, "conversation")]
    assert any(t.startswith("점심 <img src=x") for t in titles), titles
    preferences = [p.text for p in by_testid(chrome, "preference")]
    assert any(item in p for p in preferences), preferences
    no_script_ran(chrome)


def test_failures_say_what_happened_and_keep_the_users_text(chrome, site):
    relay = Restartable(int(site.url.rsplit(":", 1)[1]))
    try:
        failures(chrome, relay)
    finally:
        relay.close()


def failures(chrome, relay):
    new_user(chrome, relay.url)
    # the model fails: the answer says so, the page goes on
    type_and_enter(chrome, "[[fail]] 점심 추천")
    wait(
        chrome,
        lambda d: (
            len(messages(d)) == 2 and not d.find_elements("css selector", '[aria-busy="true"]')
        ),
        what="the failed answer",
    )
    note = chrome.find_element("css selector", ".message.assistant .note").text
    assert "답변을 만들지 못했습니다" in note
    # too long: refused in the page, the text stays, nothing is sent
    box = by_testid(chrome, "message-input")[0]
    limit = int(box.get_attribute("data-max-chars"))
    chrome.execute_script("arguments[0].value = arguments[1]", box, "가" * (limit + 1))
    type_and_enter(chrome, "")
    assert f"{limit}자까지" in status(chrome) and f"{limit + 1}자" in status(chrome)
    assert len(box.get_attribute("value")) == limit + 1 and len(messages(chrome)) == 2
    box.clear()
    # the server goes down mid-answer: what came stays, marked, and says why
    type_and_enter(chrome, "[[slow]] 야식 추천")
    wait(chrome, lambda d: len(messages(d)) == 4 and messages(d)[3][1], what="a first piece")
    relay.down()
    wait(chrome, lambda d: "연결이 끊겨" in status(d), timeout_s=5, what="the cut answer")
    note = chrome.find_elements("css selector", ".message.assistant .note")[-1].text
    assert "연결이 끊겨" in note and messages(chrome)[3][1]  # the pieces that came stay
    # still down: the message is not shown as sent and goes back in the box
    type_and_enter(chrome, "저녁은 뭐 먹지")
    wait(chrome, lambda d: "보내지 못했습니다" in status(d), what="the unsent message")
    assert box.get_attribute("value") == "저녁은 뭐 먹지" and len(messages(chrome)) == 4
    # back up: the user goes on in the same conversation, with the same session
    relay.up = True
    box.clear()
    type_and_enter(chrome, "다시 물어볼게요")
    assert "다시 물어볼게요" in answered(chrome, 3)
    assert status(chrome) == ""  # the problem line is gone once things work
    # a reload mid-answer: the question is there, the answer marked as cut, not lost silently
    type_and_enter(chrome, "[[slow]] 후식 추천")
    wait(chrome, lambda d: len(messages(d)) == 8 and messages(d)[7][1], what="a first piece")
    chrome.refresh()
    ready(chrome)
    wait(chrome, lambda d: len(messages(d)) == 8, what="the conversation after the reload")
    assert messages(chrome)[6] == ("user", "[[slow]] 후식 추천")
    last = by_testid(chrome, "message")[7]
    assert "중간에 끊겼습니다" in last.find_element("css selector", ".note").text


def test_enter_during_hangul_composition_does_not_send(chrome, site):
    new_user(chrome, site.url)
    box = by_testid(chrome, "message-input")[0]
    box.send_keys("김치")
    # the Enter that ends an IME composition (isComposing; keyCode 229 in Chrome and Safari)
    for init in ("{isComposing: true}", "{keyCode: 229}"):
        chrome.execute_script(
            "arguments[0].dispatchEvent(new KeyboardEvent('keydown', Object.assign("
            "{key: 'Enter', bubbles: true, cancelable: true}, " + init + ")))",
            box,
        )
    assert messages(chrome) == [] and box.get_attribute("value") == "김치"
    type_and_enter(chrome, "찌개")  # a real Enter after composition sends once
    answered(chrome, 1)
    assert messages(chrome)[0] == ("user", "김치찌개") and len(messages(chrome)) == 2


def test_phone_width_and_keyboard_only(chrome, site):
    from selenium.webdriver.common.keys import Keys

    name = new_user(chrome, site.url)
    account = site.store.user_by_name(name)
    for item in ("오이", "땅콩"):
        turn = site.store.begin_turn(account.id, None, f"{item} 얘기", [(item, "dislike")])
    for _ in range(8):  # a conversation longer than the screen
        turn = site.store.begin_turn(account.id, turn.conversation_id, "한식 " * 40)
        site.store.finish_turn(turn.assistant_message_id, "비빔밥 " * 40, True, (1, 1), 1, 1)
    chrome.set_window_size(375, 667)
    try:
        chrome.get(f"{site.url}/?c={turn.conversation_id}")
        ready(chrome)
        assert len(messages(chrome)) == 18
        # only the message list scrolls: the top bar and the message box stay on the screen
        assert chrome.execute_script(
            "return document.documentElement.scrollHeight <= innerHeight"
            " && document.querySelector('.composer').getBoundingClientRect().bottom <= innerHeight"
        )
        outside = chrome.execute_script(
            "return [...document.querySelectorAll('body *')].filter(e => {"
            " const r = e.getBoundingClientRect(); const s = getComputedStyle(e);"
            " return r.width > 0 && s.visibility !== 'hidden' && e.closest('.visually-hidden')"
            " === null && (r.right > innerWidth + 0.5 || r.left < -0.5); })"
            ".map(e => e.tagName + '.' + e.className)"
        )
        assert outside == []
        assert chrome.execute_script("return document.documentElement.scrollWidth <= innerWidth")
        # the list is a drawer under the top bar: its buttons stay visible and usable
        toggle = chrome.find_element("css selector", ".menu-toggle")
        toggle.click()
        bottom, top = chrome.execute_script(
            "return [document.querySelector('.topbar').getBoundingClientRect().bottom,"
            " document.querySelector('.sidebar').getBoundingClientRect().top]"
        )
        assert top >= bottom - 1, (top, bottom)
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "false"
    finally:
        chrome.set_window_size(1280, 860)
    chrome.refresh()
    ready(chrome)
    # keyboard only: from the message box (where the page puts the cursor), Tab walks the
    # page in reading order and comes back round, each stop visibly focused
    assert chrome.switch_to.active_element.get_attribute("data-testid") == "message-input"
    stops = []
    for _ in range(10):
        chrome.switch_to.active_element.send_keys(Keys.TAB)
        stops.append(
            chrome.execute_script(
                "const e = document.activeElement;"
                "return [e.dataset.testid || e.id || e.tagName, e.matches(':focus-visible')"
                " && getComputedStyle(e).outlineStyle !== 'none']"
            )
        )
    stops = [stop for stop in stops if stop[0] != "BODY"]  # past the end: the browser's own
    assert [name for name, _ in stops] == [
        "send",
        "logout",
        "new-conversation",
        "conversation",
        "conversation",
        "preference-remove",
        "preference-remove",
        "messages",  # a scrolled list: the arrow keys scroll it
        "message-input",
    ]
    assert all(visible for _, visible in stops), stops
    # remove a preference with the keyboard: the focus stays in the list, not lost to <body>
    remove = by_testid(chrome, "preference-remove")[0]
    remove.send_keys(Keys.ENTER)
    wait(chrome, lambda d: len(by_testid(d, "preference")) == 1, what="one preference left")
    wait(
        chrome,
        lambda d: d.switch_to.active_element.get_attribute("data-testid") == "preference-remove",
        what="the focus on the next item",
    )
    # screen readers: the page is Korean, the answers area announces, every control is named
    assert chrome.find_element("tag name", "html").get_attribute("lang") == "ko"
    log = chrome.find_element("id", "messages")
    assert log.get_attribute("aria-live") == "polite" and log.get_attribute("role") == "log"
    unnamed = chrome.execute_script(
        "return [...document.querySelectorAll('button, textarea, input:not([type=hidden])')]"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
        " && !e.textContent.trim()).map(e => e.outerHTML)"
    )
    assert unnamed == []


def test_two_tabs_and_a_cross_site_page(chrome, site):
    """Logged out in one tab, the other goes to the log-in page at its next step; a page on
    another port of the same host (same site: the Lax cookie IS sent) posts a form and fetches
    with the cookie, and is refused."""
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    name = new_user(chrome, site.url)
    type_and_enter(chrome, "오이는 싫어요")
    answered(chrome, 1)
    evil = FastAPI()
    attack = f"""<!doctype html><body>
<form id="f" method="post" action="{site.url}/logout">
<input name="csrf_token" value="guessed"></form>
<script>
fetch("{site.url}/api/chat", {{method: "POST", credentials: "include", mode: "no-cors",
  headers: {{"Content-Type": "text/plain"}}, body: '{{"content": "evil"}}'}})
  .finally(() => fetch("{site.url}/api/preferences/1", {{method: "DELETE",
    credentials: "include"}}).catch(() => {{}}))
  .finally(() => document.getElementById("f").submit());
</script></body>"""

    @evil.get("/")
    async def page():
        return HTMLResponse(attack)

    server = ServerThread(evil).start()
    try:
        chrome.get(server.url)
        # the log-out form reached the server with the cookie (a cookie-less one goes to
        # /login) and was refused for its token
        wait(chrome, lambda d: "잘못된 요청입니다" in d.page_source, what="the refusal")
    finally:
        server.stop()
    chrome.get(site.url)
    ready(chrome)
    assert len(by_testid(chrome, "conversation")) == 1  # no "evil" conversation
    assert len(by_testid(chrome, "preference")) == 1
    # two tabs: log out in the second, the first finds out at its next send
    first = chrome.current_window_handle
    chrome.switch_to.new_window("tab")
    chrome.get(site.url)
    ready(chrome)
    by_testid(chrome, "logout")[0].click()
    wait(chrome, lambda d: d.current_url.endswith("/login"), what="logged out")
    chrome.close()
    chrome.switch_to.window(first)
    type_and_enter(chrome, "아직 로그인?")
    wait(chrome, lambda d: d.current_url.endswith("/login"), what="sent to the log-in page")
    # logged in again in this tab, the message that could not go is back in the box
    by_testid(chrome, "login-username")[0].send_keys(name)
    by_testid(chrome, "login-password")[0].send_keys(PASSWORD)
    by_testid(chrome, "login-submit")[0].click()
    ready(chrome)
    assert by_testid(chrome, "message-input")[0].get_attribute("value") == "아직 로그인?"
    assert "되살렸어요" in status(chrome)
    chrome.refresh()  # once only
    ready(chrome)
    assert by_testid(chrome, "message-input")[0].get_attribute("value") == ""
