// The chat page: conversations, streamed answers, preferences. Text from users and the model is
// only ever set with textContent / text nodes, never parsed as HTML.
"use strict";

(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const user = document.querySelector('meta[name="kotune-user"]').content;
  const DRAFT = "kotune-unsent"; // this tab's message that met a logged-out session
  const $ = (id) => document.getElementById(id);
  const messages = $("messages");
  const input = $("message-input");
  const composer = $("composer");
  const sendButton = composer.querySelector('[data-testid="send"]');
  const statusLine = $("status");
  const conversationList = $("conversations");
  const preferenceList = $("preferences");
  const sidebar = $("sidebar");
  const menuToggle = document.querySelector(".menu-toggle");
  const LABELS = { like: "좋아함", dislike: "싫어함", cannot_eat: "못 먹음" };
  const maxChars = Number(input.dataset.maxChars) || 4000; // the server's limit, in characters
  const DROPPED = "서버와의 연결이 끊겨 답변이 중간에 멈췄습니다. 다시 보내 주세요.";
  let current = null; // the open conversation's id (null: a new one)
  let busy = false;
  let view = 0; // counts switches of conversation: an answer still streaming knows if it moved

  async function api(method, path, body) {
    const options = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("logged out");
    }
    return response;
  }

  function serverError(response) {
    return `서버에 오류가 났습니다 (${response.status}). 잠시 뒤 다시 시도해 주세요.`;
  }

  async function problem(response) {
    try {
      const data = await response.json();
      return typeof data.detail === "string" ? data.detail : serverError(response);
    } catch {
      return serverError(response);
    }
  }

  function say(text, isProblem = false) {
    statusLine.textContent = text;
    statusLine.classList.toggle("problem", isProblem);
  }

  function scrollDown() {
    messages.lastElementChild?.scrollIntoView({ block: "end" });
  }

  function addMessage(role, text, complete = true) {
    const item = document.createElement("li");
    item.className = `message ${role}`;
    item.dataset.testid = "message";
    item.dataset.role = role;
    const who = document.createElement("span");
    who.className = "visually-hidden";
    who.textContent = role === "user" ? "나: " : "답변: ";
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    item.append(who, bubble);
    if (!complete) markIncomplete(item);
    messages.append(item);
    $("empty").hidden = true;
    scrollDown();
    return item;
  }

  function markIncomplete(item, note = "답변이 중간에 끊겼습니다.") {
    item.classList.add("incomplete");
    const tag = document.createElement("p");
    tag.className = "note";
    tag.textContent = note;
    item.append(tag);
    scrollDown();
  }

  function setLocation(id) {
    window.history.replaceState(null, "", id ? `/?c=${encodeURIComponent(id)}` : "/");
  }

  function renderConversations(list) {
    conversationList.replaceChildren(
      ...list.map((conversation) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.dataset.testid = "conversation";
        button.dataset.id = conversation.id;
        button.textContent = conversation.title || "(제목 없음)";
        if (conversation.id === current) button.setAttribute("aria-current", "true");
        button.addEventListener("click", () => openConversation(conversation.id));
        item.append(button);
        return item;
      }),
    );
    $("no-conversations").hidden = list.length > 0;
  }

  async function loadConversations() {
    const response = await api("GET", "/api/conversations");
    if (response.ok) renderConversations((await response.json()).conversations);
  }

  function renderPreferences(list) {
    if (!preferenceList) return;
    preferenceList.replaceChildren(
      ...list.map((preference) => {
        const item = document.createElement("li");
        item.dataset.testid = "preference";
        item.dataset.polarity = preference.polarity;
        const label = document.createElement("span");
        label.className = `polarity ${preference.polarity}`;
        label.textContent = LABELS[preference.polarity] || preference.polarity;
        const name = document.createElement("span");
        name.className = "item";
        name.textContent = preference.item;
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "remove";
        remove.dataset.testid = "preference-remove";
        remove.dataset.id = String(preference.id);
        remove.setAttribute("aria-label", `${preference.item} (${label.textContent}) 지우기`);
        remove.textContent = "지우기";
        remove.addEventListener("click", () => removePreference(preference.id));
        item.append(label, name, remove);
        return item;
      }),
    );
    $("no-preferences").hidden = list.length > 0;
  }

  async function loadPreferences() {
    if (!preferenceList) return;
    const response = await api("GET", "/api/preferences");
    if (response.ok) renderPreferences((await response.json()).preferences);
  }

  async function removePreference(id) {
    const buttons = [...preferenceList.querySelectorAll("button")];
    const index = buttons.findIndex((button) => button.dataset.id === String(id));
    const response = await api("DELETE", `/api/preferences/${id}`);
    if (!response.ok) say(await problem(response), true);
    await loadPreferences();
    // keyboard users stay in the list: the next item's button, else the one before, else the box
    const left = preferenceList.querySelectorAll("button");
    (left[Math.min(index, left.length - 1)] || input).focus();
  }

  function startNew() {
    current = null;
    view += 1;
    messages.replaceChildren();
    $("empty").hidden = false;
    setLocation(null);
    for (const button of conversationList.querySelectorAll("button")) button.removeAttribute("aria-current");
    closeSidebar();
    input.focus();
  }

  async function openConversation(id) {
    const response = await api("GET", `/api/conversations/${encodeURIComponent(id)}`);
    if (!response.ok) {
      say(await problem(response), true);
      startNew();
      return;
    }
    const conversation = await response.json();
    say("");
    current = conversation.id;
    view += 1;
    messages.replaceChildren();
    for (const message of conversation.messages) {
      if (message.role === "assistant" && !message.complete && !message.content) {
        addMessage("assistant", "", false);
      } else {
        addMessage(message.role, message.content, message.complete);
      }
    }
    $("empty").hidden = conversation.messages.length > 0;
    setLocation(current);
    for (const button of conversationList.querySelectorAll("button")) {
      if (button.dataset.id === current) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    closeSidebar();
    input.focus();
  }

  function* events(buffer) {
    // server-sent events: "event: NAME\ndata: JSON" blocks separated by a blank line
    for (const block of buffer) {
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      yield [name, data ? JSON.parse(data) : {}];
    }
  }

  function notSent(question, answer, text, reason) {
    // the server did not take the message: it is not in the conversation, and nothing the user
    // typed is lost — the text goes back in the box, the reason in the status line
    question.remove();
    answer.remove();
    $("empty").hidden = messages.children.length > 0;
    if (!input.value) {
      input.value = text;
      grow();
    }
    say(`보내지 못했습니다: ${reason} 메시지는 입력창에 그대로 있어요.`, true);
  }

  async function send(text) {
    busy = true;
    sendButton.disabled = true;
    say("답변을 만드는 중…");
    const question = addMessage("user", text);
    const answer = addMessage("assistant", "");
    const bubble = answer.querySelector(".bubble");
    answer.setAttribute("aria-busy", "true");
    let finished = false;
    let accepted = false;
    const shown = view;
    try {
      const response = await api("POST", "/api/chat", { conversation_id: current, content: text });
      if (!response.ok) {
        notSent(question, answer, text, await problem(response));
        finished = true;
        return;
      }
      accepted = true;
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        const blocks = pending.split("\n\n");
        pending = blocks.pop();
        for (const [name, data] of events(blocks)) {
          if (name === "meta") {
            // the conversation it went to is the page's, unless the user has moved on since
            if (view === shown) {
              const isNew = current !== data.conversation_id;
              current = data.conversation_id;
              setLocation(current);
              if (isNew) loadConversations();
            } else {
              loadConversations();
            }
            if (data.preferences) renderPreferences(data.preferences);
          } else if (name === "delta") {
            bubble.append(document.createTextNode(data.text));
            scrollDown();
          } else if (name === "done") {
            finished = true;
          } else if (name === "error") {
            markIncomplete(answer, data.message);
            finished = true;
          }
        }
      }
      if (!finished) markIncomplete(answer);
      finished = true;
      say("");
    } catch (error) {
      if (error.message === "logged out") {
        // on the way to /login (logged out in another tab, or the session ended): the text
        // waits in this tab's storage for the same user's next log-in here
        sessionStorage.setItem(DRAFT, JSON.stringify({ user, text }));
        return;
      }
      if (!accepted) notSent(question, answer, text, "서버에 연결하지 못했습니다.");
      else if (!finished) {
        markIncomplete(answer, DROPPED);
        say(DROPPED, true);
      }
    } finally {
      answer.removeAttribute("aria-busy");
      busy = false;
      sendButton.disabled = false;
      input.focus();
    }
  }

  function grow() {
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
    input.style.overflowY = input.scrollHeight > 200 ? "auto" : "hidden";
  }

  function closeSidebar() {
    sidebar.classList.remove("open");
    menuToggle.setAttribute("aria-expanded", "false");
  }

  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || busy) return;
    const length = [...text].length; // characters, as the server counts them
    if (length > maxChars) {
      say(`메시지는 ${maxChars}자까지 보낼 수 있습니다 (지금 ${length}자). 나눠서 보내 주세요.`, true);
      return;
    }
    input.value = "";
    grow();
    send(text);
  });

  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; Enter that ends Hangul composition is not a send
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  input.addEventListener("input", grow);

  document.querySelector('[data-testid="new-conversation"]').addEventListener("click", startNew);

  menuToggle.addEventListener("click", () => {
    // the drawer opens right under the top bar, however many lines the persona's text takes
    const top = document.querySelector(".topbar").getBoundingClientRect().bottom;
    sidebar.style.setProperty("--drawer-top", `${Math.round(top)}px`);
    const open = sidebar.classList.toggle("open");
    menuToggle.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });

  window.addEventListener("unhandledrejection", (event) => {
    // a list, a conversation or a removal that could not reach the server
    if (event.reason?.message !== "logged out") {
      say("서버에 연결하지 못했습니다. 잠시 뒤 다시 시도해 주세요.", true);
    }
  });

  function restoreUnsent() {
    const saved = sessionStorage.getItem(DRAFT);
    sessionStorage.removeItem(DRAFT);
    try {
      const draft = JSON.parse(saved);
      if (draft && draft.user === user && typeof draft.text === "string" && !input.value) {
        input.value = draft.text;
        grow();
        say("로그아웃되어 보내지 못했던 메시지를 입력창에 되살렸어요.", true);
      }
    } catch {
      // nothing saved, or not ours
    }
  }

  restoreUnsent();
  const wanted = new URLSearchParams(window.location.search).get("c");
  Promise.all([
    loadConversations().then(() => (wanted ? openConversation(wanted) : input.focus())),
    loadPreferences(),
  ]).finally(() => {
    document.body.dataset.ready = "true"; // the first loads are done (tests wait for this)
  });
})();
