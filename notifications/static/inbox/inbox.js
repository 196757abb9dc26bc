// The live inbox page: sign in into the session cookie, then follow both API variants'
// streams with EventSource({withCredentials: true}), as the public documentation shows.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("inbox-config").textContent);
  const $ = (id) => document.getElementById(id);
  const LIST_LIMIT = 50;

  const state = {
    user: null,              // {user_id, organization_id, open}
    datasetFilter: "",
    datasetItems: new Map(), // id -> dataset notification
    datasetOffset: 0,
    datasetUnread: 0,
    orgUnread: null,
    streams: [],
    datasetNames: new Map(config.demo ? config.demo.datasets.map((d) => [d.id, d.name]) : []),
    refreshTimer: null,
  };

  // --- small helpers ------------------------------------------------------------------

  async function call(method, url, body) {
    const options = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, options);
    } catch (error) { // the server is away: the streams show it and retry
      return {ok: false, status: 0, data: null};
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (response.status === 401) {
      signedOut("Your session has ended; sign in again.");
    }
    return {ok: response.ok, status: response.status, data};
  }

  function errorText(result) {
    const detail = result.data && (result.data.message || result.data.detail);
    if (Array.isArray(detail)) return detail.map((e) => e.msg).join("; ");
    return detail || `Request failed (${result.status})`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function timeText(iso) {
    // The dataset variant sends naive UTC times; the organization variant ends them in Z.
    const when = new Date(iso.endsWith("Z") ? iso : iso + "Z");
    return Number.isNaN(when.getTime()) ? iso : when.toLocaleString();
  }

  function announce(text) {
    $("announce").textContent = text;
  }

  function withQuery(url, params) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value !== "" && value !== null && value !== undefined) query.set(name, value);
    }
    const text = query.toString();
    return text ? `${url}${url.includes("?") ? "&" : "?"}${text}` : url;
  }

  // --- connection status --------------------------------------------------------------

  function showStatus() {
    const status = $("status");
    if (!state.user) {
      status.dataset.state = "signed-out";
      status.textContent = "Signed out";
      return;
    }
    const states = state.streams.map((s) => s.state);
    let next = "live";
    if (states.includes("reconnecting")) next = "reconnecting";
    else if (states.includes("connecting")) next = "connecting";
    status.dataset.state = next;
    status.textContent = {live: "Live", reconnecting: "Reconnecting…", connecting: "Connecting…"}[next];
  }

  // One stream: the browser reconnects on its own (sending Last-Event-ID); when it gives up
  // (the server answered with an error), a new EventSource resumes from the last id seen.
  function openStream(url, handlers, {resume = false, onOpen = () => {}} = {}) {
    const stream = {state: "connecting", source: null, lastId: "", timer: null, delay: 1000, closed: false};
    const connect = () => {
      const source = new EventSource(
        resume && stream.lastId ? withQuery(url, {last_event_id: stream.lastId}) : url,
        {withCredentials: true});
      stream.source = source;
      source.addEventListener("open", () => {
        stream.state = "live";
        stream.delay = 1000;
        showStatus();
        onOpen();
      });
      source.addEventListener("error", (event) => {
        if (event.data !== undefined) { // the server's own `event: error`; the stream stays open
          announce(JSON.parse(event.data).detail || "The server reported an error");
          return;
        }
        stream.state = "reconnecting";
        showStatus();
        if (source.readyState === EventSource.CLOSED && !stream.closed) {
          stream.timer = setTimeout(async () => {
            const who = await call("GET", config.session).catch(() => null);
            if (stream.closed) return;
            if (who && who.ok && !who.data.signed_in) signedOut(who.data.detail);
            else connect();
          }, stream.delay);
          stream.delay = Math.min(stream.delay * 2, 15000);
        }
      });
      for (const [name, handle] of Object.entries(handlers)) {
        source.addEventListener(name, (event) => {
          if (event.lastEventId) stream.lastId = event.lastEventId;
          stream.state = "live";
          handle(event);
        });
      }
    };
    stream.close = () => {
      stream.closed = true;
      clearTimeout(stream.timer);
      if (stream.source) stream.source.close();
    };
    connect();
    state.streams.push(stream);
    showStatus();
    return stream;
  }

  function closeStreams() {
    for (const stream of state.streams) stream.close();
    state.streams = [];
  }

  // --- the bell -----------------------------------------------------------------------

  function showBell() {
    const count = state.orgUnread !== null ? state.orgUnread : state.datasetUnread;
    $("badge").textContent = String(count);
    $("badge").dataset.count = String(count);
    $("bell").setAttribute("aria-label", `Unread notifications: ${count}`);
    $("dataset-count").textContent = String(state.datasetUnread);
    $("organization-count").textContent = String(state.orgUnread ?? 0);
  }

  // A read in another tab or process changes the count: bring both lists up to date.
  function refreshSoon() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => {
      if (config.dataset) loadDataset();
      if (hasOrganization()) loadOrganization();
    }, 150);
  }

  // --- dataset variant ----------------------------------------------------------------

  function datasetLabel(item) {
    const name = item.metadata && item.metadata.dataset_name;
    if (item.dataset_id && name) state.datasetNames.set(item.dataset_id, name);
    return item.dataset_id ? (state.datasetNames.get(item.dataset_id) || item.dataset_id) : "";
  }

  function datasetTitle(item) {
    return item.title || item.message || (item.metadata && item.metadata.view_name) || "(untitled)";
  }

  function renderDatasetFilter() {
    const select = $("dataset-filter");
    const known = new Set([...select.options].map((o) => o.value));
    for (const [id, name] of state.datasetNames) {
      if (!known.has(id)) select.append(new Option(name, id));
    }
  }

  function renderDataset(freshId) {
    const list = $("dataset-list");
    const items = [...state.datasetItems.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    list.replaceChildren(...items.map((item) => {
      const unread = !item.read_at;
      const li = element("li", `item${unread ? " unread" : ""}${item.id === freshId ? " fresh" : ""}`);
      li.dataset.id = item.id;
      li.append(element("span", "title", datasetTitle(item)));
      if (item.message && item.title) li.append(element("span", "body", item.message));
      const where = datasetLabel(item);
      li.append(element("span", "meta", `${timeText(item.created_at)}${where ? " · " + where : ""}${unread ? " · unread" : ""}`));
      if (unread) {
        const button = element("button", "", "Mark read");
        button.type = "button";
        button.setAttribute("aria-label", `Mark read: ${datasetTitle(item)}`);
        button.addEventListener("click", () => markDatasetRead(item));
        li.append(button);
      }
      return li;
    }));
    $("dataset-empty").hidden = items.length > 0;
    renderDatasetFilter();
    showBell();
  }

  async function loadDataset({more = false} = {}) {
    const offset = more ? state.datasetOffset : 0;
    const filter = state.datasetFilter;
    const [list, count] = await Promise.all([
      call("GET", withQuery(`${config.dataset}/notifications`, {limit: LIST_LIMIT, offset, dataset_id: filter})),
      call("GET", withQuery(`${config.dataset}/notifications/unread-count`, {dataset_id: filter})),
    ]);
    if (!list.ok || !count.ok || filter !== state.datasetFilter) return;
    if (!more) {
      // The page is the truth; keep only what the stream delivered after it was read.
      const page = new Map(list.data.notifications.map((n) => [n.id, n]));
      const newest = list.data.notifications[0];
      for (const [id, item] of state.datasetItems) {
        if (!page.has(id) && (!newest || item.created_at > newest.created_at)) page.set(id, item);
      }
      state.datasetItems = page;
    } else {
      for (const n of list.data.notifications) state.datasetItems.set(n.id, n);
    }
    state.datasetOffset = offset + list.data.notifications.length;
    state.datasetUnread = count.data.count;
    $("dataset-more").hidden = !list.data.has_more;
    renderDataset();
  }

  function onDatasetNotification(event) {
    const item = JSON.parse(event.data);
    if (state.datasetItems.has(item.id)) return;
    state.datasetItems.set(item.id, item);
    state.datasetOffset += 1;
    if (!item.read_at) state.datasetUnread += 1;
    renderDataset(item.id);
    announce(`New notification: ${datasetTitle(item)}`);
  }

  async function markDatasetRead(item) {
    const result = await call("POST", `${config.dataset}/notifications/${item.id}/read`);
    // 404: already read elsewhere (or gone); either way it is not unread here any more.
    if (result.ok || result.status === 404) {
      if (!item.read_at) state.datasetUnread = Math.max(0, state.datasetUnread - 1);
      item.read_at = item.read_at || new Date().toISOString().replace("Z", "");
      renderDataset();
      announce(`Marked read: ${datasetTitle(item)}`);
    }
  }

  async function markDatasetAllRead() {
    const result = await call("POST", withQuery(`${config.dataset}/notifications/read-all`, {dataset_id: state.datasetFilter}));
    if (!result.ok) return;
    const now = new Date().toISOString().replace("Z", "");
    for (const item of state.datasetItems.values()) item.read_at = item.read_at || now;
    state.datasetUnread = 0;
    renderDataset();
    announce(`Marked ${result.data.count} read`);
  }

  function followDataset() {
    if (state.datasetStream) {
      state.datasetStream.close();
      state.streams = state.streams.filter((s) => s !== state.datasetStream);
    }
    state.datasetItems = new Map();
    renderDataset();
    // The list is (re)loaded once the stream is open, so nothing falls between the two.
    state.datasetStream = openStream(
      withQuery(`${config.dataset}/notifications/stream`, {dataset_id: state.datasetFilter}),
      {notification: onDatasetNotification, ping: () => showStatus(), reset: () => loadDataset()},
      {resume: true, onOpen: () => loadDataset()});
  }

  // --- organization variant -----------------------------------------------------------

  function hasOrganization() {
    return Boolean(config.organization && state.user && state.user.organization_id);
  }

  function renderOrganization(inbox) {
    $("organization-list").replaceChildren(...inbox.items.map((item) => {
      const unread = !item.read_at;
      const li = element("li", `item${unread ? " unread" : ""}`);
      li.dataset.id = item.id;
      li.append(element("span", "title", item.title || item.kind || "(untitled)"));
      if (item.body) li.append(element("span", "body", item.body));
      li.append(element("span", "meta", `${timeText(item.created_at)}${item.kind ? " · " + item.kind : ""}${unread ? " · unread" : ""}`));
      if (unread) {
        const button = element("button", "", "Mark read");
        button.type = "button";
        button.setAttribute("aria-label", `Mark read: ${item.title || item.kind}`);
        button.addEventListener("click", () => markOrganizationRead([item.id]));
        li.append(button);
      }
      return li;
    }));
    $("organization-empty").hidden = inbox.items.length > 0;
  }

  async function loadOrganization() {
    const result = await call("GET", withQuery(`${config.organization}/notifications`, {limit: LIST_LIMIT}));
    if (result.ok) renderOrganization(result.data);
  }

  async function markOrganizationRead(ids) {
    const result = await call("POST", `${config.organization}/notifications/mark-read`, {ids});
    if (result.ok) {
      renderOrganization(result.data);
      announce(ids.length ? "Marked read" : "Marked all read");
    }
  }

  function onUnread(event) {
    const unread = JSON.parse(event.data).unread;
    const changed = state.orgUnread !== null && unread !== state.orgUnread;
    state.orgUnread = unread;
    showBell();
    if (changed) refreshSoon();
  }

  // --- tabs ---------------------------------------------------------------------------

  function selectTab(tab, focus = false) {
    for (const other of document.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
  }

  function setUpTabs() {
    const tabs = () => [...document.querySelectorAll('[role="tab"]')].filter((t) => !t.hidden);
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      tab.addEventListener("click", () => selectTab(tab));
      tab.addEventListener("keydown", (event) => {
        const all = tabs();
        const at = all.indexOf(tab);
        const next = {ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: all.length - 1}[event.key];
        if (next === undefined) return;
        event.preventDefault();
        selectTab(all[(next + all.length) % all.length], true);
      });
    }
  }

  // --- signing in and out -------------------------------------------------------------

  function signedOut(reason) {
    closeStreams();
    state.datasetStream = null;
    state.user = null;
    state.orgUnread = null;
    state.datasetUnread = 0;
    state.datasetItems = new Map();
    $("inbox").hidden = true;
    $("bell").hidden = true;
    $("who").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = reason || "";
    showStatus();
  }

  function signedIn(user) {
    state.user = user;
    $("sign-in").hidden = true;
    $("sign-in-error").textContent = "";
    $("inbox").hidden = false;
    $("bell").hidden = false;
    $("who").hidden = false;
    $("who").textContent = user.organization_id
      ? `${user.user_id} in ${user.organization_id}` : user.user_id;
    $("sign-out").hidden = Boolean(user.open);
    $("tab-dataset").hidden = !config.dataset;
    $("tab-organization").hidden = !hasOrganization();
    $("organization-name").textContent = user.organization_id ? `Organization ${user.organization_id}` : "";
    selectTab(config.dataset ? $("tab-dataset") : $("tab-organization"));
    if (config.dataset) followDataset();
    if (hasOrganization()) {
      loadOrganization();
      openStream(`${config.organization}/notifications/stream`, {unread: onUnread});
    }
    if (config.demo) setUpDemoSend();
    showBell();
  }

  async function signIn(url, body) {
    $("sign-in-error").textContent = "";
    const result = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", Accept: "application/json"},
      body: JSON.stringify(body),
    }).then(async (r) => ({ok: r.ok, status: r.status, data: await r.json().catch(() => null)}));
    if (!result.ok) {
      $("sign-in-error").textContent = errorText(result);
      return;
    }
    $("token").value = "";
    signedIn(result.data);
  }

  async function signOut() {
    await call("DELETE", config.session);
    signedOut("Signed out.");
    $("token").focus();
  }

  // --- demo mode ----------------------------------------------------------------------

  function setUpDemoSignIn() {
    $("demo-sign-in").hidden = false;
    $("demo-users").replaceChildren(...config.demo.users.map((user) => {
      const button = element("button", "", user.organization_id
        ? `${user.user_id} (${user.organization_id})` : user.user_id);
      button.type = "button";
      button.setAttribute("aria-label", `Sign in as ${user.user_id}`);
      button.addEventListener("click", () => signIn(config.demo.session, {user_id: user.user_id}));
      return button;
    }));
  }

  function setUpDemoSend() {
    $("demo-send").hidden = false;
    const target = $("demo-target");
    const options = [];
    if (state.user.organization_id) options.push(new Option(`Inbox item (${state.user.organization_id})`, ""));
    for (const dataset of config.demo.datasets) options.push(new Option(`Alert: ${dataset.name}`, dataset.id));
    target.replaceChildren(...options);
  }

  async function demoSend(event) {
    event.preventDefault();
    const body = {title: $("demo-title").value, body: $("demo-body").value || null};
    if ($("demo-target").value) body.dataset_id = $("demo-target").value;
    const result = await call("POST", config.demo.send, body);
    $("demo-result").textContent = result.ok ? "Sent." : errorText(result);
  }

  // --- start --------------------------------------------------------------------------

  async function start() {
    setUpTabs();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn(config.session, {token: $("token").value.trim()});
    });
    $("sign-out").addEventListener("click", signOut);
    $("bell").addEventListener("click", () => {
      const tab = hasOrganization() ? $("tab-organization") : $("tab-dataset");
      selectTab(tab, true);
    });
    $("dataset-filter").addEventListener("change", (event) => {
      state.datasetFilter = event.target.value;
      followDataset();
    });
    $("dataset-read-all").addEventListener("click", markDatasetAllRead);
    $("dataset-more").addEventListener("click", () => loadDataset({more: true}));
    $("organization-read-all").addEventListener("click", () => markOrganizationRead([]));
    $("demo-send").addEventListener("submit", demoSend);
    if (config.demo) setUpDemoSignIn();
    if (!config.dataset && !config.organization) {
      signedOut("Both API variants are turned off on this server.");
      return;
    }
    const who = await call("GET", config.session).catch(() => null);
    if (who && who.ok && who.data.signed_in) signedIn(who.data);
    else signedOut(who && who.data ? who.data.detail : "");
  }

  start();
})();
