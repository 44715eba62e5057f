// The operator console of `wxnotify serve`: reads the console API and fills the page.
// Everything from the server is put in the page as text (textContent), never as HTML.
"use strict";

const STATES = ["delivered", "failed", "retrying", "in_flight", "queued"];
const $ = (id) => document.getElementById(id);

const session = {
  tenant: "",
  key: "",
  since: 0,
  until: 0,
  next: null,
};

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text || "";
  message.className = isError ? "error" : "";
}

async function api(path) {
  const response = await fetch(`/v1/${encodeURIComponent(session.tenant)}${path}`, {
    headers: { Authorization: `Bearer ${session.key}` },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const reason = body && body.error ? body.error.message : response.statusText;
    throw new Error(`${response.status}: ${reason}`);
  }
  return body;
}

function when(millis) {
  if (!millis) return "";
  return new Date(millis).toLocaleString();
}

// "3 min ago" / "in 1 h 55 min" relative to the server's clock.
function relative(seconds, nowMillis) {
  if (seconds === null || seconds === undefined) return "—";
  const delta = Math.round(seconds - nowMillis / 1000);
  const magnitude = Math.abs(delta);
  const parts = magnitude >= 3600
    ? `${Math.floor(magnitude / 3600)} h ${Math.floor((magnitude % 3600) / 60)} min`
    : magnitude >= 60 ? `${Math.floor(magnitude / 60)} min` : `${magnitude} s`;
  return delta < 0 ? `${parts} ago` : `in ${parts}`;
}

function errorText(error) {
  if (!error) return "";
  const api = error.errcode !== undefined ? ` (${error.errcode} ${error.errmsg || ""})` : "";
  return `${error.kind ? error.kind + ": " : ""}${error.message || ""}${api}`.trim();
}

function shownState(notification) {
  return notification.state === "queued" && notification.attempts > 0 ? "retrying" : notification.state;
}

function drawChart(buckets) {
  const svg = $("chart");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const width = 960 / Math.max(buckets.length, 1);
  const highest = Math.max(1, ...buckets.map((b) => STATES.reduce((sum, s) => sum + b[s], 0)));
  buckets.forEach((bucket, i) => {
    let top = 200;
    for (const state of STATES) {
      const height = (bucket[state] / highest) * 190;
      if (height <= 0) continue;
      top -= height;
      const bar = document.createElementNS(ns, "rect");
      bar.setAttribute("x", String(i * width + 1));
      bar.setAttribute("y", String(top));
      bar.setAttribute("width", String(Math.max(width - 2, 1)));
      bar.setAttribute("height", String(height));
      bar.setAttribute("class", state);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${when(bucket.start)}: ${bucket[state]} ${state.replace("_", " ")}`;
      bar.appendChild(title);
      svg.appendChild(bar);
    }
  });
  const axis = $("chart-axis");
  axis.replaceChildren(element("span", when(session.since)), element("span", when(session.until)));
}

function showSummary(summary) {
  const total = (state) => summary.buckets.reduce((sum, b) => sum + b[state], 0);
  $("count-delivered").textContent = total("delivered");
  $("count-failed").textContent = total("failed");
  $("count-retrying").textContent = summary.retrying;
  $("depth-queued").textContent = summary.queued;
  $("depth-in-flight").textContent = summary.in_flight;
  drawChart(summary.buckets);
  const body = $("tokens").tBodies[0];
  body.replaceChildren();
  for (const token of summary.tokens) {
    const row = element("tr");
    row.dataset.account = token.account;
    const cached = token.expires_at !== null && token.expires_at !== undefined;
    row.append(
      element("td", token.account.replace("_", " ")),
      element("td", token.appid, "id"),
      element("td", token.mode),
      element("td", cached ? relative(token.fetched_at, summary.now) : "no token cached"),
      element("td", cached ? relative(token.refresh_at, summary.now) : "—"),
      element("td", cached ? relative(token.expires_at, summary.now) : "—"),
    );
    body.appendChild(row);
  }
}

function addRows(notifications) {
  const rows = $("rows");
  for (const n of notifications) {
    const row = element("tr");
    row.dataset.id = n.id;
    const state = shownState(n);
    const badge = element("span", state.replace("_", " "), `state ${state}`);
    const stateCell = element("td");
    stateCell.appendChild(badge);
    row.append(
      element("td", when(n.enqueued_at)),
      element("td", n.id, "id"),
      element("td", n.recipient || "", "recipient"),
      stateCell,
      element("td", n.channel ? n.channel.replace(/_/g, " ") : ""),
      element("td", n.attempts),
      element("td", errorText(n.error), "error"),
    );
    row.addEventListener("click", () => showDetail(n.id));
    rows.appendChild(row);
  }
}

async function showDetail(id) {
  try {
    const status = await api(`/notifications/${encodeURIComponent(id)}`);
    $("detail-id").textContent = id;
    const fields = $("detail-fields");
    fields.replaceChildren();
    const add = (name, value) => {
      if (value === null || value === undefined || value === "") return;
      fields.append(element("dt", name), element("dd", typeof value === "string" ? value : JSON.stringify(value, null, 2)));
    };
    add("state", status.state);
    add("channel", status.channel);
    add("attempts", String(status.attempts));
    add("WeChat's final status", status.wechat_status);
    add("last error", status.error);
    add("detail", status.detail);
    $("detail").hidden = false;
  } catch (error) {
    say(`Could not read notification ${id}: ${error.message}`, true);
  }
}

function listQuery() {
  const params = new URLSearchParams({ since: session.since, until: session.until, limit: 100 });
  const state = $("state").value;
  const search = $("search").value.trim();
  if (state) params.set("state", state);
  if (search) params.set("q", search);
  if (session.next) params.set("after", session.next);
  return `/console/notifications?${params}`;
}

async function loadPage() {
  const page = await api(listQuery());
  addRows(page.notifications);
  session.next = page.next;
  $("more").hidden = !page.next;
}

async function refreshList() {
  session.next = null;
  $("rows").replaceChildren();
  $("detail").hidden = true;
  await loadPage();
}

async function open(event) {
  if (event) event.preventDefault();
  session.tenant = $("tenant").value.trim();
  session.key = $("key").value;
  session.until = Date.now();
  session.since = session.until - Number($("window").value);
  say("Loading…");
  try {
    const params = new URLSearchParams({ since: session.since, until: session.until, buckets: 24 });
    showSummary(await api(`/console/summary?${params}`));
    await refreshList();
    // The tab remembers the tenant and key until it is closed; nothing is written to disk.
    sessionStorage.setItem("wxnotify-console", JSON.stringify({ tenant: session.tenant, key: session.key }));
    $("overview").hidden = false;
    say("");
  } catch (error) {
    $("overview").hidden = true;
    say(`Could not open tenant ${session.tenant}: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", open);
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    refreshList().catch((error) => say(error.message, true));
  });
  $("more").addEventListener("click", () => loadPage().catch((error) => say(error.message, true)));
  const saved = JSON.parse(sessionStorage.getItem("wxnotify-console") || "null");
  const fromUrl = new URLSearchParams(location.search).get("tenant");
  if (fromUrl) $("tenant").value = fromUrl;
  if (saved) {
    $("tenant").value = fromUrl || saved.tenant;
    $("key").value = saved.key;
    if (!fromUrl || fromUrl === saved.tenant) open();
  }
});
