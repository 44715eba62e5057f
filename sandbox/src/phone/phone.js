// The sandbox phone: shows each simulated user's WeChat and acts for them through the
// sandbox's admin API. Everything from the server is put in the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const view = { state: null, selected: null, tab: "subscribe" };

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function call(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error(answer && answer.error ? answer.error : response.statusText);
  return answer;
}

function selectedUser() {
  if (!view.state) return null;
  return view.state.users.find((u) => (u.mini_openid || u.oa_openid) === view.selected) || null;
}

function when(millis) {
  return new Date(millis).toLocaleString("zh-CN", { hour12: false });
}

function renderUsers() {
  const list = $("users");
  list.replaceChildren();
  view.state.users.forEach((user, i) => {
    const key = user.mini_openid || user.oa_openid;
    const item = element("li", `user ${i + 1}${user.following ? " · follows the OA" : ""}`);
    item.dataset.user = key;
    if (key === view.selected) item.classList.add("selected");
    item.appendChild(element("small", user.mini_openid || "(no mini-program openid)"));
    item.addEventListener("click", () => {
      view.selected = key;
      $("code").hidden = true;
      render();
    });
    list.appendChild(item);
  });
}

function card(message, title, link) {
  const node = element("div", null, "card");
  node.dataset.template = message.template_id;
  node.appendChild(element("p", when(message.at), "time"));
  node.appendChild(element("h3", title));
  const fields = element("dl");
  for (const value of message.displayed) {
    fields.appendChild(element("dt", value.key));
    const shown = element("dd", value.text, value.truncated ? "truncated" : "");
    if (value.truncated) shown.title = "cut by the platform at 20 characters";
    fields.appendChild(shown);
  }
  node.appendChild(fields);
  if (link) {
    const row = element("div", null, "link");
    row.append(element("span", link.label), element("span", link.target));
    node.appendChild(row);
  }
  return node;
}

function renderFeed(user) {
  const feed = $("feed");
  feed.replaceChildren();
  if (view.tab === "subscribe") {
    for (const m of user.subscribe_messages) {
      const target = m.page || "(the mini-program's home page)";
      feed.appendChild(card(m, `订阅消息 · ${m.template_id}`, { label: "进入小程序查看", target }));
    }
    if (!user.subscribe_messages.length) feed.appendChild(element("p", "No 服务通知 yet.", "empty"));
  } else {
    for (const m of user.template_messages) {
      const link = m.miniprogram
        ? { label: "进入小程序查看", target: m.miniprogram.pagepath || "" }
        : m.url ? { label: "详情", target: m.url } : null;
      feed.appendChild(card(m, `模板消息 · ${m.template_id}`, link));
    }
    if (!user.template_messages.length) feed.appendChild(element("p", "No template message yet.", "empty"));
  }
}

function renderPhone() {
  const user = selectedUser();
  $("phone").hidden = !user;
  if (!user) return;
  const index = view.state.users.indexOf(user) + 1;
  $("who").textContent = `user ${index}`;
  $("tab-subscribe").classList.toggle("active", view.tab === "subscribe");
  $("tab-oa").classList.toggle("active", view.tab === "oa");
  renderFeed(user);
  const follow = $("follow");
  follow.textContent = user.following ? "取消关注公众号" : "关注公众号";
  follow.disabled = !user.oa_openid;
  $("open-popup").disabled = !user.mini_openid;
  $("login").disabled = !user.mini_openid;
  const ids = $("ids");
  ids.replaceChildren();
  const add = (name, value) => ids.append(element("dt", name), element("dd", value || "—"));
  add("mini openid", user.mini_openid);
  add("OA openid", user.oa_openid);
  add("unionid", user.unionid);
  add("subscriptions left", Object.entries(user.subscriptions).map(([t, n]) => `${t}: ${n}`).join(", "));
}

function renderPushes() {
  const list = $("pushes");
  list.replaceChildren();
  for (const push of view.state.pushes) {
    const item = element("li", `${push.event} from ${push.openid} → ${push.status === null ? "no answer" : push.status} ${push.answer}`);
    if (push.status === 200) item.classList.add("delivered");
    item.appendChild(element("small", push.url));
    list.appendChild(item);
  }
  if (!view.state.pushes.length) {
    const configured = Object.values(view.state.callbacks).some((url) => url);
    list.appendChild(element("li", configured ? "No push yet." : "No callback URL set: actions push nothing."));
  }
}

function render() {
  renderUsers();
  renderPhone();
  renderPushes();
}

async function refresh() {
  view.state = await call("GET", "/sandbox/phone/state");
  if (!view.selected && view.state.users.length) {
    const first = view.state.users[0];
    view.selected = first.mini_openid || first.oa_openid;
  }
  const oa = $("oa-callback");
  const mini = $("mini-callback");
  if (document.activeElement !== oa) oa.value = view.state.callbacks.official_account || "";
  if (document.activeElement !== mini) mini.value = view.state.callbacks.mini_program || "";
  render();
}

async function act(action) {
  try {
    await action();
    await refresh();
  } catch (error) {
    alert(error.message);
  }
}

function openPopup() {
  const select = $("popup-template");
  select.replaceChildren();
  for (const template of Object.keys(view.state.mini_templates)) {
    select.appendChild(element("option", template));
  }
  showKeys();
  $("popup").hidden = false;
}

function showKeys() {
  const keys = view.state.mini_templates[$("popup-template").value] || [];
  $("popup-keys").replaceChildren(...keys.map((key) => element("li", key)));
}

function answerPopup(answer) {
  const user = selectedUser();
  const template_id = $("popup-template").value;
  $("popup").hidden = true;
  act(() => call("POST", `/sandbox/users/${encodeURIComponent(user.mini_openid)}/popup`, { template_id, answer }));
}

document.addEventListener("DOMContentLoaded", () => {
  $("tab-subscribe").addEventListener("click", () => { view.tab = "subscribe"; renderPhone(); });
  $("tab-oa").addEventListener("click", () => { view.tab = "oa"; renderPhone(); });
  $("follow").addEventListener("click", () => {
    const user = selectedUser();
    act(() => call("PUT", `/sandbox/users/${encodeURIComponent(user.oa_openid)}/following`, { following: !user.following }));
  });
  $("open-popup").addEventListener("click", openPopup);
  $("popup-template").addEventListener("change", showKeys);
  $("popup-accept").addEventListener("click", () => answerPopup("accept"));
  $("popup-reject").addEventListener("click", () => answerPopup("reject"));
  $("login").addEventListener("click", () => act(async () => {
    const user = selectedUser();
    const { code } = await call("POST", `/sandbox/users/${encodeURIComponent(user.mini_openid)}/login-code`);
    const shown = $("code");
    shown.textContent = `wx.login() → code ${code} (valid 5 min, once): send it to your backend's login`;
    shown.hidden = false;
  }));
  $("add-follower").addEventListener("click", () => act(() => call("POST", "/sandbox/users", { follows_oa: true })));
  $("add-stranger").addEventListener("click", () => act(() => call("POST", "/sandbox/users", { follows_oa: false })));
  $("callbacks").addEventListener("submit", (event) => {
    event.preventDefault();
    const url = (id) => $(id).value.trim() || null;
    act(() => call("PUT", "/sandbox/callbacks", { official_account: url("oa-callback"), mini_program: url("mini-callback") }));
  });
  refresh().catch((error) => alert(error.message));
  // New messages arrive from the developer's server at any time.
  setInterval(() => {
    if ($("popup").hidden) refresh().catch(() => {});
  }, 2000);
});
