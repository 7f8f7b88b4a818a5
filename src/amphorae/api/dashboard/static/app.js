// The dashboard: polls the API, keeps what it read in `state`, redraws, and carries out
// the operator's actions through the same API (its policy decides).

import { ApiError, get, put, setToken, token } from "./api.js";
import { clock } from "./dom.js";
import { Series } from "./sparkline.js";
import * as views from "./views.js";

const params = new URLSearchParams(location.search);
// Seconds between refreshes (?interval=1 for a livelier page).
const INTERVAL = Math.max(0.5, Number(params.get("interval")) || 3) * 1000;
const ARM_SECONDS = 5; // how long a failover button waits for its confirming click
const FAILOVER_WATCH = 120000; // ms a requested failover is followed at most

const state = {
  lbs: [],
  lbError: null,
  trees: new Map(), // load balancer id -> status tree, or the Error reading it
  members: new Map(), // member id -> the member (for admin_state_up)
  series: new Map(), // listener id -> Series of its statistics
  amphorae: null, // list, or an Error (not an admin: 403)
  events: null, // list, or an Error (404: the API has no events endpoint)
  armed: null, // {key, until}: the action waiting for its confirming click
  busy: new Set(), // keys of actions in flight
  failovers: new Map(), // load balancer id -> when this page asked for its failover
};

const $ = (id) => document.getElementById(id);

function notice(text, kind = "info") {
  const el = $("notice");
  el.textContent = text;
  el.className = kind;
  el.hidden = !text;
}

function explain(err) {
  if (err instanceof ApiError && err.status === 401) {
    return "401: the API wants a Keystone token: paste one above.";
  }
  return err.message;
}

// Settles every promise; a failure becomes the Error itself.
async function settle(promise) {
  try {
    return await promise;
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}

// A load balancer's status tree; its members go into `members`, its listeners'
// statistics into their series.
async function readTree(lb, members) {
  const tree = await settle(get(`/v2/lbaas/loadbalancers/${lb.id}/status`));
  if (tree instanceof Error) return tree;
  const root = tree.statuses.loadbalancer;
  const pools = root.listeners.flatMap((l) => l.pools);
  const now = Date.now();
  await Promise.all([
    ...pools.map(async (pool) => {
      const got = await settle(get(`/v2/lbaas/pools/${pool.id}/members`));
      if (!(got instanceof Error)) for (const m of got.members) members.set(m.id, m);
    }),
    ...root.listeners.map(async (listener) => {
      const got = await settle(get(`/v2/lbaas/listeners/${listener.id}/stats`));
      if (got instanceof Error) return;
      if (!state.series.has(listener.id)) state.series.set(listener.id, new Series());
      state.series.get(listener.id).add(now, got.stats);
    }),
  ]);
  return root;
}

async function readEvents() {
  const filter = $("event-filter").value;
  const got = await settle(get(`/v2/octavia/events?limit=30${filter ? `&${filter}` : ""}`));
  if (!(got instanceof ApiError)) return got instanceof Error ? got : got.events;
  if (got.status === 404) return new Error("no events endpoint (this API does not serve /v2/octavia/events)");
  return new Error(`events: ${explain(got)}`);
}

async function readAmphorae() {
  const got = await settle(get("/v2/octavia/amphorae"));
  if (!(got instanceof Error)) return got.amphorae;
  if (got instanceof ApiError && got.status === 403) {
    return new Error("403: listing amphorae is for administrators (the API's policy).");
  }
  return new Error(explain(got));
}

async function refresh() {
  const lbs = await settle(get("/v2/lbaas/loadbalancers"));
  const [amphorae, events] = await Promise.all([readAmphorae(), readEvents()]);
  state.amphorae = amphorae;
  state.events = events;
  if (lbs instanceof Error) {
    state.lbError = explain(lbs);
    state.lbs = [];
  } else {
    state.lbError = null;
    state.lbs = lbs.loadbalancers.filter((lb) => lb.provisioning_status !== "DELETED");
    const members = new Map();
    const trees = await Promise.all(state.lbs.map((lb) => readTree(lb, members)));
    state.trees = new Map(state.lbs.map((lb, i) => [lb.id, trees[i]]));
    state.members = members;
    forgetGoneListeners(trees);
  }
  forgetFinishedFailovers();
  render();
}

// Series of listeners no longer there go (kept while any tree could not be read).
function forgetGoneListeners(trees) {
  if (trees.some((t) => t instanceof Error)) return;
  const live = new Set(trees.flatMap((t) => (t instanceof Error ? [] : t.listeners))
    .map((l) => l.id));
  for (const id of state.series.keys()) if (!live.has(id)) state.series.delete(id);
}

// A failover this page asked for is over once the load balancer is no longer pending.
function forgetFinishedFailovers() {
  for (const [id, since] of state.failovers) {
    const lb = state.lbs.find((l) => l.id === id);
    const seenPending = lb && lb.provisioning_status.startsWith("PENDING");
    if (!lb || Date.now() - since > FAILOVER_WATCH || (!seenPending && Date.now() - since > 2 * INTERVAL)) {
      state.failovers.delete(id);
    }
  }
}

function render() {
  if (state.armed && state.armed.until < Date.now()) state.armed = null;
  $("summary").textContent = views.summary(state);
  $("lb-list").replaceChildren(views.loadBalancers(state));
  $("amp-list").replaceChildren(views.amphorae(state));
  $("event-list").replaceChildren(views.events(state));
  $("refreshed").textContent = `refreshed ${clock(new Date().toISOString())} · every ${INTERVAL / 1000} s`
    + (token() ? " · with a Keystone token" : "");
}

const ACTIONS = {
  "lb-failover": (b) => put(`/v2/lbaas/loadbalancers/${b.id}/failover`).then(() => {
    state.failovers.set(b.id, Date.now());
    return "Failover of the load balancer requested.";
  }),
  "amp-failover": (b) => put(`/v2/octavia/amphorae/${b.id}/failover`)
    .then(() => "Failover of the amphora requested."),
  "member-toggle": (b) => put(`/v2/lbaas/pools/${b.pool}/members/${b.id}`,
    { member: { admin_state_up: b.enable === "yes" } })
    .then(() => `Member ${b.enable === "yes" ? "enabled" : "disabled"}.`),
};

async function onAction(button) {
  const data = button.dataset;
  const confirmed = state.armed?.key === data.key && state.armed.until >= Date.now();
  if (data.confirm === "yes" && !confirmed) {
    state.armed = { key: data.key, until: Date.now() + ARM_SECONDS * 1000 };
    render();
    return;
  }
  state.armed = null;
  state.busy.add(data.key);
  render();
  try {
    notice(await ACTIONS[data.action](data));
  } catch (err) {
    notice(explain(err), "error");
  } finally {
    state.busy.delete(data.key);
  }
  await refresh();
}

let timer = null;
let generation = 0; // a refresh started by the operator replaces the scheduled one

async function loop() {
  clearTimeout(timer);
  const mine = ++generation;
  try {
    await refresh();
  } catch (err) {
    notice(`refresh failed: ${err.message}`, "error");
  }
  if (mine === generation) timer = setTimeout(loop, INTERVAL);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (button && !button.disabled) onAction(button);
});

$("auth").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token").value.trim());
  $("token").value = "";
  notice(token() ? "Token kept for this tab (sessionStorage)." : "");
  loop();
});
$("forget").addEventListener("click", () => {
  setToken("");
  notice("Token forgotten.");
  loop();
});
$("event-filter").addEventListener("change", loop);

loop();
