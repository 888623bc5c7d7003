// The account dashboard: plain DOM, no build step. Everything shown is set through textContent or
// element properties, never parsed as HTML, so a task's text (prompt, provider message) cannot run.
const KEY_STORE = "kling.apiKey";
const STEPS = ["queued", "submitting", "submitted", "processing", "archiving", "succeeded"];
const FINAL = new Set(["succeeded", "failed", "canceled"]);
const LIST_LIMIT = 20;

const state = {
  key: sessionStorage.getItem(KEY_STORE),
  tasks: new Map(),
  // undefined: not tried yet; false: this server has no /stream route (poll instead).
  streams: undefined,
  openStreams: new Map(),
  sources: new Map(),
  timers: [],
};

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) node.append(child);
  return node;
};

const api = async (path, init = {}) => {
  const res = await fetch(path, { ...init, headers: { ...init.headers, authorization: `Bearer ${state.key}` } });
  if (res.status === 401) {
    signOut("The API key was refused.");
    throw new Error("unauthenticated");
  }
  return res;
};

// The list's query from the filter controls (a batch filter adds one parameter here).
const listQuery = () => {
  const params = new URLSearchParams({ limit: String(LIST_LIMIT) });
  const status = $("filter-status").value;
  if (status) params.set("status", status);
  return params;
};

const progressOf = (task) => (task.status === "succeeded" ? STEPS.length - 1 : Math.max(0, STEPS.indexOf(task.status)));

const renderRows = () => {
  const rows = [...state.tasks.values()].map((task) => {
    const bar = el("progress", { max: STEPS.length - 1, value: progressOf(task) });
    const row = el(
      "tr",
      { className: `status-${task.status}` },
      el("td", {}, el("code", { textContent: task.id.slice(-12), title: task.id })),
      el("td", { className: "external-id", textContent: task.external_task_id ?? "" }),
      el("td", { textContent: task.status }),
      el("td", {}, bar),
      el("td", { textContent: task.status_message }),
      el("td", { textContent: new Date(task.created_at).toLocaleTimeString() }),
    );
    row.dataset.taskId = task.id;
    row.dataset.status = task.status;
    row.dataset.progress = String(progressOf(task));
    return row;
  });
  $("task-rows").replaceChildren(...rows);
};

// The source: an inline (Base64) source is fetched from our storage with the key; a URL source is
// the caller's own URL.
const sourceUrl = async (task) => {
  if (state.sources.has(task.id)) return state.sources.get(task.id);
  let url = null;
  if (task.request.image.kind === "url") url = task.request.image.url;
  else {
    const res = await api(`/v1/tasks/${encodeURIComponent(task.id)}/source`);
    if (res.ok) url = URL.createObjectURL(await res.blob());
  }
  state.sources.set(task.id, url);
  return url;
};

const outlineFor = (request) => {
  const w = 1 + request.left_expansion_ratio + request.right_expansion_ratio;
  const h = 1 + request.up_expansion_ratio + request.down_expansion_ratio;
  const box = el("div", { className: "outline", title: "the source's place in the result" });
  Object.assign(box.style, {
    left: `${(request.left_expansion_ratio / w) * 100}%`,
    top: `${(request.up_expansion_ratio / h) * 100}%`,
    width: `${(1 / w) * 100}%`,
    height: `${(1 / h) * 100}%`,
  });
  return box;
};

const renderPair = async (task) => {
  const src = await sourceUrl(task);
  const source = el("figure", { className: "source" });
  if (src) source.append(el("img", { src, alt: "source", referrerPolicy: "no-referrer" }));
  const size = task.request.source;
  source.append(el("figcaption", { textContent: size ? `source ${size.width}×${size.height}` : "source" }));
  const results = task.images.map((image) => {
    const img = el("img", { src: image.url, alt: `result ${image.index}` });
    img.dataset.expectedWidth = String(image.width);
    img.dataset.expectedHeight = String(image.height);
    return el("figure", {}, el("div", { className: "frame" }, img, outlineFor(task.request)), el("figcaption", { textContent: `result ${image.width}×${image.height}` }));
  });
  const failure = task.failure ? el("p", { className: "failure", textContent: `failed (${task.failure.class}): ${task.failure.message ?? task.status_message}` }) : "";
  const pair = el(
    "div",
    { className: `pair status-${task.status}` },
    el("div", {}, el("code", { textContent: task.id.slice(-12), title: task.id }), " ", el("span", { textContent: task.status })),
    el("div", { className: "images" }, source, ...results),
    failure,
  );
  pair.dataset.taskId = task.id;
  return pair;
};

const renderGallery = async () => {
  const done = [...state.tasks.values()].filter((t) => t.status === "succeeded" || t.status === "failed");
  const shown = new Set([...$("gallery").children].map((c) => `${c.dataset.taskId}:${c.className}`));
  if (done.length === shown.size && done.every((t) => shown.has(`${t.id}:pair status-${t.status}`))) return;
  $("gallery").replaceChildren(...(await Promise.all(done.map(renderPair))));
};

const refreshList = async () => {
  const res = await api(`/v1/tasks?${listQuery()}`);
  if (!res.ok) return;
  const page = await res.json();
  state.tasks = new Map(page.data.map((t) => [t.id, t]));
  renderRows();
  await renderGallery();
  for (const task of page.data) if (!FINAL.has(task.status)) follow(task.id);
};

const refreshTask = async (id) => {
  const res = await api(`/v1/tasks/${encodeURIComponent(id)}`);
  if (!res.ok) return;
  const task = await res.json();
  if (state.tasks.has(id)) state.tasks.set(id, task);
  renderRows();
  await renderGallery();
};

// Live progress: the task's event stream when this server has one (any event means "read the task
// again"), otherwise the list is polled every second.
const follow = async (id) => {
  if (state.streams === false || state.openStreams.has(id)) return;
  const abort = new AbortController();
  state.openStreams.set(id, abort);
  try {
    const res = await api(`/v1/tasks/${encodeURIComponent(id)}/stream`, { signal: abort.signal, headers: { accept: "text/event-stream" } });
    if (!res.ok || !(res.headers.get("content-type") ?? "").includes("text/event-stream")) {
      state.streams = false;
      setLiveMode();
      return;
    }
    state.streams = true;
    setLiveMode();
    const reader = res.body.getReader();
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      await refreshTask(id);
    }
  } catch {
    // Aborted or dropped: the next poll picks the task up again.
  } finally {
    state.openStreams.delete(id);
  }
};

const setLiveMode = () => {
  $("live-mode").textContent = state.streams ? "(live: event stream)" : "(live: polling every second)";
};

const refreshProvider = async () => {
  const res = await fetch("/readyz");
  const body = await res.json().catch(() => ({}));
  const provider = body.provider;
  if (!provider || provider.error) {
    $("provider-state").textContent = "unknown";
    return;
  }
  $("provider-state").textContent = provider.state === "closed" ? "available" : provider.state;
  $("provider-state").className = `badge ${provider.state}`;
  $("provider-reason").textContent = provider.reason ? `${provider.reason} (next try ${new Date(provider.next_probe_at).toLocaleTimeString()})` : "";
  $("slots-meter").max = provider.slots.capacity;
  $("slots-meter").value = provider.slots.in_use;
  $("slots-text").textContent = `${provider.slots.in_use} in use of ${provider.slots.effective} usable (${provider.slots.capacity} configured)`;
};

const every = (ms, work) => {
  const run = () => work().catch(() => undefined);
  void run();
  state.timers.push(setInterval(run, ms));
};

const start = () => {
  $("sign-in").hidden = true;
  $("main").hidden = false;
  $("sign-out").hidden = false;
  setLiveMode();
  every(1000, refreshList);
  every(3000, refreshProvider);
};

const signOut = (message = "") => {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  for (const abort of state.openStreams.values()) abort.abort();
  $("main").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
};

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const res = await fetch("/v1/tasks?limit=1", { headers: { authorization: `Bearer ${key}` } });
  if (!res.ok) {
    $("sign-in-error").textContent = res.status === 401 ? "That API key is not valid." : `The server answered ${res.status}.`;
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  state.key = key;
  $("api-key").value = "";
  start();
});
$("sign-out").addEventListener("click", () => signOut());
$("filter-status").addEventListener("change", () => void refreshList());

if (state.key) start();
else signOut();
