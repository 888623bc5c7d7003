// The account dashboard: plain DOM, no build step. Everything shown is set through textContent or
// element properties, never parsed as HTML, so a task's text (prompt, provider message) cannot run.
const KEY_STORE = "kling.apiKey";
const STEPS = ["queued", "submitting", "submitted", "processing", "archiving", "succeeded"];
const FINAL = new Set(["succeeded", "failed", "canceled"]);
const LIST_LIMIT = 20;
const BATCH_LIMIT = 10;
const BATCH_FINAL = new Set(["completed", "completed_with_errors", "canceled"]);
// A browser opens at most 6 HTTP/1.1 connections to one server and each open stream holds one:
// past these, the periodic reads keep things moving, and the page's other requests still get through.
const MAX_TASK_STREAMS = 2;
const MAX_BATCH_STREAMS = 2;
// The most of one batch's tasks the gallery shows (read a page of 200 at a time).
const GALLERY_MAX = 400;

const state = {
  key: sessionStorage.getItem(KEY_STORE),
  tasks: new Map(),
  // undefined: not tried yet; false: this server has no /stream route (poll instead).
  streams: undefined,
  openStreams: new Map(),
  sources: new Map(),
  timers: [],
  batches: new Map(),
  // Per batch: its stream's (or poll's) AbortController while one follows it.
  batchFollowers: new Map(),
  batchStreams: undefined,
  selectedBatch: null,
  // true once a batch's gallery button was clicked: the gallery stays on it; otherwise it follows
  // the running batch (the newest running one, else the newest).
  galleryPicked: false,
  // What the batch gallery shows (batch id, finished count, status) and a counter so that only the
  // latest of overlapping renders lands.
  galleryShown: "",
  galleryRun: 0,
  // Where each batch's view last came from (stream, poll or list), shown as data-via on its row.
  batchVia: new Map(),
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

// The source as we stored it (fetched with the key): never the caller's URL, which would make the
// viewer's browser fetch whatever the caller named (the CSP allows images from this origin only).
// A URL source has no stored copy until our check downloaded it: it is asked for again later.
const sourceUrl = async (task) => {
  if (state.sources.has(task.id)) return state.sources.get(task.id);
  const res = await api(`/v1/tasks/${encodeURIComponent(task.id)}/source`);
  if (!res.ok) return null;
  const url = URL.createObjectURL(await res.blob());
  state.sources.set(task.id, url);
  return url;
};

// A result's signed link, loaded from this page's own origin (the API that served it), whatever
// host PUBLIC_BASE_URL names: the CSP allows images from here only.
const sameOrigin = (link) => {
  const url = new URL(link, location.href);
  return url.pathname + url.search;
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
    const img = el("img", { src: sameOrigin(image.url), alt: `result ${image.index}` });
    img.dataset.expectedWidth = String(image.width);
    img.dataset.expectedHeight = String(image.height);
    return el("figure", {}, el("div", { className: "frame" }, img, outlineFor(task.request)), el("figcaption", { textContent: `result ${image.width}×${image.height}` }));
  });
  const failure = task.failure ? el("p", { className: "failure", textContent: `failed (${task.failure.class}): ${task.failure.message ?? task.status_message}` }) : "";
  const pair = el(
    "div",
    { className: `pair status-${task.status}` },
    el(
      "div",
      {},
      el("code", { textContent: task.id.slice(-12), title: task.id }),
      " ",
      el("span", { className: "status", textContent: task.status }),
      task.batch_line === undefined ? "" : el("span", { className: "line", textContent: `line ${task.batch_line}` }),
    ),
    el("div", { className: "images" }, source, ...results),
    failure,
  );
  pair.dataset.taskId = task.id;
  return pair;
};

// A gallery's pairs for these tasks: a pair already shown for a task in the same state is kept (the
// same element, its images loaded), so that one more finished task adds its pair without swapping
// out the images under whoever is looking at the others.
const pairKey = (task) => `${task.id}:pair status-${task.status}`;
const galleryPairs = (container, tasks) => {
  const shown = new Map([...container.children].map((c) => [`${c.dataset.taskId}:${c.className}`, c]));
  const unchanged = tasks.length === shown.size && tasks.every((t) => shown.has(pairKey(t)));
  return { unchanged, pairs: () => Promise.all(tasks.map((t) => shown.get(pairKey(t)) ?? renderPair(t))) };
};

// One render at a time: two overlapping ones (a list refresh and a stream event) both saw the old
// gallery and both replaced it.
let galleryRender = Promise.resolve();
const renderGallery = () => (galleryRender = galleryRender.then(renderGalleryNow, renderGalleryNow));

const renderGalleryNow = async () => {
  const done = [...state.tasks.values()].filter((t) => t.status === "succeeded" || t.status === "failed");
  const gallery = galleryPairs($("gallery"), done);
  if (gallery.unchanged) return;
  $("gallery").replaceChildren(...(await gallery.pairs()));
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
  if (state.streams === false || state.openStreams.has(id) || state.openStreams.size >= MAX_TASK_STREAMS) return;
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
  renderRoutes(Array.isArray(provider.routes) ? provider.routes : []);
};

// Each route of PROVIDER_ROUTES: its own circuit and slots (work flows while any circuit is closed).
const renderRoutes = (routes) => {
  const rows = routes.map((route) => {
    const meter = el("meter", { min: 0, max: Math.max(1, route.slots.capacity), value: route.slots.in_use });
    const circuit = route.state === "closed" ? "closed (available)" : `${route.state}${route.reason ? `: ${route.reason}` : ""}${route.next_probe_at ? ` (next try ${new Date(route.next_probe_at).toLocaleTimeString()})` : ""}`;
    const row = el(
      "tr",
      {},
      el("td", {}, el("code", { textContent: route.name })),
      el("td", { textContent: route.kind }),
      el("td", {}, el("span", { className: `badge ${route.state}`, textContent: circuit })),
      el("td", { className: "slots" }, meter, ` ${route.slots.in_use} / ${route.slots.effective} (${route.slots.capacity} configured)`),
      el("td", { textContent: route.run_ms === null ? "not yet observed" : `${(route.run_ms / 1000).toFixed(1)} s` }),
    );
    row.dataset.route = route.name;
    row.dataset.state = route.state;
    return row;
  });
  $("route-rows").replaceChildren(...rows);
};

// ---- Batches -------------------------------------------------------------------------------------

const eta = (batch) => {
  if (BATCH_FINAL.has(batch.status)) return "done";
  if (batch.eta_seconds === null) return "estimating";
  const s = batch.eta_seconds;
  return s < 90 ? `~${s} s` : s < 5400 ? `~${Math.round(s / 60)} min` : `~${(s / 3600).toFixed(1)} h`;
};

const countsText = (counts) =>
  Object.entries(counts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${status} ${n}`)
    .join(" · ") || "no tasks";

const renderBatchRows = () => {
  const batches = [...state.batches.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
  $("no-batches").hidden = batches.length > 0;
  const rows = batches.map((batch) => {
    const row = el(
      "tr",
      { className: `status-${batch.status}${batch.id === state.selectedBatch ? " selected" : ""}` },
      el("td", {}, el("code", { textContent: batch.id.slice(-12), title: batch.id })),
      el("td", { className: "batch-name", textContent: batch.name ?? "" }),
      el("td", { className: "batch-status", textContent: batch.status }),
      el("td", {}, el("progress", { max: 100, value: batch.percent }), el("span", { className: "percent", textContent: `${batch.percent}% (${batch.finished}/${batch.total})` })),
      el("td", { className: "counts", textContent: countsText(batch.counts) }),
      el("td", { className: "eta", textContent: eta(batch) }),
      el("td", { textContent: new Date(batch.created_at).toLocaleTimeString() }),
      el("td", {}, el("button", { type: "button", className: "show-gallery", textContent: "gallery", onclick: () => selectBatch(batch.id) })),
    );
    row.dataset.batchId = batch.id;
    row.dataset.status = batch.status;
    row.dataset.percent = String(batch.percent);
    row.dataset.via = state.batchVia.get(batch.id) ?? "list";
    return row;
  });
  $("batch-rows").replaceChildren(...rows);
};

const setBatchLiveMode = () => {
  $("batch-live-mode").textContent = state.batchStreams === false ? "(live: polling every second)" : "(live: event stream)";
};

// One batch's latest view, from its stream, a poll or the list.
const updateBatch = (batch, via) => {
  if (!batch || typeof batch.id !== "string") return;
  state.batches.set(batch.id, batch);
  state.batchVia.set(batch.id, via);
  const before = state.selectedBatch;
  if (!state.galleryPicked) state.selectedBatch = followedBatch();
  renderBatchRows();
  if (batch.id === state.selectedBatch || before !== state.selectedBatch) void renderBatchGallery();
};

// The batch the gallery follows when none was picked: the newest one still running, else the newest.
const followedBatch = () => {
  const batches = [...state.batches.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
  return (batches.find((b) => !BATCH_FINAL.has(b.status)) ?? batches[0])?.id ?? null;
};

// Server-Sent Events read from a fetch body (EventSource cannot send the Bearer header): calls
// onEvent(name, data) per event; stops when it returns false or the stream ends.
const readEvents = async (res, onEvent) => {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // Lines may end in CRLF, CR or LF (a CR at the end may be half of a CRLF: wait for more).
    buffer = (buffer + value).replace(/\r\n|\r(?=.)/gs, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line === "" || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
      if (data.length > 0 && onEvent(event, data.join("\n")) === false) {
        await reader.cancel().catch(() => undefined);
        return;
      }
    }
  }
};

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

// Without a stream (none on this server, or too many open): GET /v1/batches/{id} every second.
const pollBatch = async (id, abort) => {
  while (!abort.signal.aborted) {
    const res = await api(`/v1/batches/${encodeURIComponent(id)}`, { signal: abort.signal });
    if (!res.ok) return;
    const batch = await res.json();
    updateBatch(batch, "poll");
    if (BATCH_FINAL.has(batch.status)) return;
    await sleep(1000, abort.signal);
  }
};

// Live progress of a running batch: its event stream (`batch` carries the view, `end` closes it),
// else polling.
const followBatch = async (id) => {
  if (state.batchFollowers.has(id)) return;
  const abort = new AbortController();
  state.batchFollowers.set(id, abort);
  try {
    const streaming = [...state.batchFollowers.values()].filter((a) => a.streaming).length;
    if (state.batchStreams !== false && streaming < MAX_BATCH_STREAMS) {
      abort.streaming = true;
      const res = await api(`/v1/batches/${encodeURIComponent(id)}/stream`, { signal: abort.signal, headers: { accept: "text/event-stream" } });
      if (res.ok && (res.headers.get("content-type") ?? "").includes("text/event-stream")) {
        state.batchStreams = true;
        setBatchLiveMode();
        let ended = false;
        await readEvents(res, (event, data) => {
          if (event === "batch") updateBatch(JSON.parse(data), "stream");
          if (event === "end") ended = true;
          return !ended;
        });
        if (ended) return;
      } else if (res.status === 404 || res.status === 405 || res.ok) {
        // No stream route here (a 404 for the batch itself shows in the next list read).
        state.batchStreams = false;
        setBatchLiveMode();
      }
      abort.streaming = false;
    }
    await pollBatch(id, abort);
  } catch {
    // Aborted or dropped: the next list read follows the batch again.
  } finally {
    state.batchFollowers.delete(id);
  }
};

const refreshBatches = async () => {
  const res = await api(`/v1/batches?limit=${BATCH_LIMIT}`);
  if (!res.ok) return;
  const page = await res.json();
  // The list's own views, except for batches a stream or poll follows (it has them first).
  const listed = new Map(page.data.map((b) => [b.id, b]));
  for (const [id, batch] of listed) {
    if (!state.batches.has(id) || !state.batchFollowers.has(id)) {
      state.batches.set(id, batch);
      state.batchVia.set(id, "list");
    }
  }
  for (const id of [...state.batches.keys()]) if (!listed.has(id)) state.batches.delete(id);
  // A picked batch that left the list (too old now) gives the gallery back to the running one.
  if (state.galleryPicked && !state.batches.has(state.selectedBatch)) state.galleryPicked = false;
  if (!state.galleryPicked) state.selectedBatch = followedBatch();
  renderBatchRows();
  await renderBatchGallery();
  for (const batch of page.data) if (!BATCH_FINAL.has(batch.status)) void followBatch(batch.id);
};

const selectBatch = (id) => {
  state.galleryPicked = true;
  state.selectedBatch = id;
  renderBatchRows();
  void renderBatchGallery();
};

const batchTasks = async (id) => {
  const tasks = [];
  let cursor = null;
  do {
    const params = new URLSearchParams({ limit: "200" });
    if (cursor) params.set("cursor", cursor);
    const res = await api(`/v1/batches/${encodeURIComponent(id)}/tasks?${params}`);
    if (!res.ok) break;
    const page = await res.json();
    tasks.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor && tasks.length < GALLERY_MAX);
  return tasks.slice(0, GALLERY_MAX);
};

// The selected batch's tasks, source beside results, failures with their reasons; read again
// whenever the batch's finished count or status moves.
const followRunning = () => {
  state.galleryPicked = false;
  state.selectedBatch = followedBatch();
  renderBatchRows();
  void renderBatchGallery();
};

// Says which batch the gallery shows and why, so a person knows whether it will move on by itself.
const renderGalleryMode = (batch) => {
  const running = !BATCH_FINAL.has(batch.status);
  $("batch-gallery-mode").textContent = state.galleryPicked
    ? `Showing the batch you picked (${running ? "running" : batch.status}); it stays here while others run.`
    : running
      ? "Following the running batch; the gallery moves on to the next batch that starts. Pick another with its gallery button."
      : "Showing the newest batch (none is running); the gallery moves to the next batch that starts.";
  $("batch-gallery-mode").dataset.mode = state.galleryPicked ? "picked" : "following";
  $("batch-gallery-follow").hidden = !state.galleryPicked;
};

const renderBatchGallery = async () => {
  const batch = state.batches.get(state.selectedBatch);
  $("batch-gallery-section").hidden = !batch;
  if (!batch) return;
  renderGalleryMode(batch);
  const key = `${batch.id}:${batch.finished}:${batch.status}`;
  if (key === state.galleryShown) return;
  state.galleryShown = key;
  const run = ++state.galleryRun;
  const section = $("batch-gallery");
  let tasks, pairs;
  try {
    tasks = await batchTasks(batch.id);
    pairs = await galleryPairs(section.dataset.batchId === batch.id ? section : document.createElement("div"), tasks).pairs();
  } catch (error) {
    // Read again on the next update.
    if (run === state.galleryRun) state.galleryShown = "";
    throw error;
  }
  if (run !== state.galleryRun) return;
  $("batch-gallery-id").textContent = batch.id;
  $("batch-gallery-id").title = batch.name ?? "";
  const failed = tasks.filter((t) => t.status === "failed").length;
  const shown = tasks.length < batch.total ? ` (the first ${tasks.length})` : "";
  $("batch-gallery-summary").textContent = `${batch.total} task(s)${shown}: ${batch.counts.succeeded} succeeded, ${failed} failed, ${batch.total - batch.finished} still running.`;
  section.dataset.batchId = batch.id;
  section.replaceChildren(...pairs);
};

// Money: the account's spend against its cap (GET /v1/account/usage) and each listed batch's
// credits, both from the credit ledger.
const refreshMoney = async () => {
  const res = await api("/v1/account/usage");
  if (!res.ok) return;
  const usage = await res.json();
  const used = usage.spent + usage.reserved;
  const meter = $("money-meter");
  meter.max = usage.cap ?? Math.max(used, 1);
  meter.value = used;
  meter.hidden = usage.cap === null;
  $("money-text").textContent =
    `${usage.spent} spent + ${usage.reserved} held` +
    (usage.cap === null ? " (no cap)" : ` of a ${usage.cap} cap (${usage.available} left)`) +
    ` · this month ${usage.period.spent}${usage.period.cost === null ? "" : ` (cost ${usage.period.cost})`}`;
  const batches = [...state.batches.values()].sort((a, b) => b.created_at.localeCompare(a.created_at));
  $("money-batch-rows").replaceChildren(
    ...batches.map((batch) =>
      el(
        "tr",
        {},
        el("td", {}, el("code", { textContent: batch.id.slice(-12), title: batch.id })),
        el("td", { textContent: batch.name ?? "" }),
        el("td", { className: "credits-spent", textContent: String(batch.credits_spent ?? 0) }),
        el("td", { className: "credits-held", textContent: String(batch.credits_reserved ?? 0) }),
      ),
    ),
  );
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
  setBatchLiveMode();
  every(1000, refreshList);
  every(3000, refreshProvider);
  every(2000, refreshBatches);
  every(3000, refreshMoney);
};

const signOut = (message = "") => {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  for (const t of state.timers) clearInterval(t);
  state.timers = [];
  for (const abort of state.openStreams.values()) abort.abort();
  for (const abort of state.batchFollowers.values()) abort.abort();
  state.batches.clear();
  state.batchVia.clear();
  state.selectedBatch = null;
  state.galleryPicked = false;
  state.galleryShown = "";
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
$("batch-gallery-follow").addEventListener("click", () => followRunning());

if (state.key) start();
else signOut();
