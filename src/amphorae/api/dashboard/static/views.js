// What the page shows, made from the state app.js keeps: plain functions, data in, DOM out.
// Buttons carry data-action (and the ids it needs); app.js handles their clicks.

import { badge, clock, h, parseTime, rate, shortId } from "./dom.js";
import { sparkline } from "./sparkline.js";

const ARMED_LABEL = "Confirm?";
const BUSY = new Set(["BOOTING", "PENDING_DELETE"]);
const RECENT_EVENT = 300000; // ms a FAILOVER event counts as news of a failover under way

// A button for an action; a failover takes a second click (the button is "armed" first).
function action(state, key, label, data, confirm = false) {
  const armed = confirm && state.armed?.key === key;
  return h("button", {
    type: "button",
    class: `action${armed ? " armed" : ""}`,
    disabled: state.busy.has(key),
    dataset: { action: data.action, key, confirm: confirm ? "yes" : "no", ...data },
  }, armed ? `${ARMED_LABEL} ${label}` : label);
}

function topology(amps) {
  const roles = new Set(amps.map((a) => a.role));
  if (roles.has("MASTER") || roles.has("BACKUP")) return "ACTIVE_STANDBY";
  if (roles.has("STANDALONE")) return "SINGLE";
  return null;
}

// Whether a failover of the load balancer is under way: it is PENDING_UPDATE and this
// page asked for one, or an amphora of it is being replaced, or an event says so.
export function failingOver(lb, amps, state) {
  if (lb.provisioning_status !== "PENDING_UPDATE") return false;
  return state.failovers.has(lb.id) || amps.some((a) => BUSY.has(a.status))
    || (Array.isArray(state.events) && state.events.some(
      (e) => e.kind === "FAILOVER" && e.load_balancer_id === lb.id
        && Date.now() - parseTime(e.created_at).getTime() < RECENT_EVENT));
}

export function degradedPools(tree) {
  const pools = (tree?.listeners || []).flatMap((l) => l.pools);
  return pools.filter((p) => p.operating_status === "DEGRADED" || p.operating_status === "ERROR");
}

export function summary(state) {
  const lbs = state.lbs || [];
  const amps = Array.isArray(state.amphorae) ? state.amphorae : [];
  const count = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
  const degraded = lbs.filter((lb) => lb.operating_status !== "ONLINE").length;
  const failovers = lbs.filter((lb) => failingOver(lb, ampsOf(amps, lb.id), state)).length;
  return [count(lbs.length, "load balancer"), count(degraded, "not ONLINE", "not ONLINE"),
    count(failovers, "failover", "failovers") + " in progress",
    count(amps.length, "amphora", "amphorae")].join(" · ");
}

const ROLE_ORDER = ["MASTER", "BACKUP", "STANDALONE"];

// A load balancer's amphorae, MASTER first.
function ampsOf(amps, lbId) {
  const rank = (a) => (ROLE_ORDER.indexOf(a.role) + 4) % 4;
  return amps.filter((a) => a.loadbalancer_id === lbId).sort((a, b) => rank(a) - rank(b));
}

export function loadBalancers(state) {
  if (state.lbError) return h("p", { class: "error" }, state.lbError);
  if (!state.lbs.length) return h("p", { class: "muted" }, "No load balancers.");
  const amps = Array.isArray(state.amphorae) ? state.amphorae : [];
  return h("div", {}, state.lbs.map((lb) => lbCard(lb, ampsOf(amps, lb.id), state)));
}

function lbCard(lb, amps, state) {
  const tree = state.trees.get(lb.id);
  const moving = failingOver(lb, amps, state);
  const topo = topology(amps);
  return h("article", { class: `lb${moving ? " failing-over" : ""}`, dataset: { lb: lb.id } },
    h("header", {},
      h("h3", {}, lb.name || shortId(lb.id)),
      badge(lb.provisioning_status), badge(lb.operating_status),
      topo && h("span", { class: "tag" }, topo),
      moving && h("span", { class: "flag failover" }, "failover in progress"),
      h("span", { class: "spacer" }),
      action(state, `lb-failover:${lb.id}`, "Failover", { action: "lb-failover", id: lb.id }, true)),
    h("p", { class: "meta" }, `id ${lb.id} · VIP ${lb.vip_address || "—"}`,
      lb.project_id ? ` · project ${shortId(lb.project_id)}` : ""),
    amps.length > 0 && h("p", { class: "meta amps" }, "amphorae: ",
      amps.map((a) => h("span", { class: "amp-inline" }, a.role || "—", " ", badge(a.status)))),
    tree instanceof Error ? h("p", { class: "error" }, tree.message)
      : tree ? h("ul", { class: "tree" }, tree.listeners.map((l) => listenerNode(l, state)))
        : h("p", { class: "muted" }, "Loading the status tree…"));
}

function listenerNode(listener, state) {
  return h("li", { class: "listener", dataset: { listener: listener.id } },
    h("div", { class: "row" }, h("span", { class: "kind" }, "listener"),
      h("strong", {}, listener.name || shortId(listener.id)),
      badge(listener.provisioning_status), badge(listener.operating_status)),
    stats(state.series.get(listener.id)),
    h("ul", {}, listener.pools.map((p) => poolNode(p, state))));
}

function stats(series) {
  if (!series?.stats) return h("div", { class: "stats muted" }, "no statistics yet");
  const bytes = series.values("bytes");
  const conns = series.values("connections");
  const last = (values) => values.length ? values[values.length - 1] : 0;
  return h("div", { class: "stats" },
    h("figure", {}, sparkline(bytes, { label: "bytes per second" }),
      h("figcaption", {}, rate(last(bytes), "B"))),
    h("figure", {}, sparkline(conns, { label: "connections per second" }),
      h("figcaption", {}, rate(last(conns), "conn"))),
    h("span", { class: "counters" },
      `${series.stats.active_connections} active · ${series.stats.total_connections} total · `
      + `${series.stats.request_errors} errors`));
}

function poolNode(pool, state) {
  const bad = pool.members.filter((m) => m.operating_status === "ERROR").length;
  const degraded = pool.operating_status === "DEGRADED" || pool.operating_status === "ERROR";
  const hm = pool.health_monitor;
  return h("li", { class: `pool${degraded ? " degraded" : ""}`, dataset: { pool: pool.id } },
    h("div", { class: "row" }, h("span", { class: "kind" }, "pool"),
      h("strong", {}, pool.name || shortId(pool.id)),
      badge(pool.provisioning_status), badge(pool.operating_status),
      degraded && h("span", { class: "flag" },
        `degraded: ${bad} of ${pool.members.length} members in ERROR`),
      hm ? h("span", { class: "muted" }, `monitor ${hm.type} `, badge(hm.operating_status))
        : h("span", { class: "muted" }, "no monitor")),
    h("table", { class: "members" }, pool.members.map((m) => memberRow(m, pool, state))));
}

function memberRow(member, pool, state) {
  const full = state.members.get(member.id);
  const enabled = full ? full.admin_state_up : null;
  return h("tr", { class: `member${enabled === false ? " disabled" : ""}`, dataset: { member: member.id } },
    h("td", {}, member.name || shortId(member.id)),
    h("td", { class: "mono" }, `${member.address}:${member.protocol_port}`),
    h("td", {}, badge(member.provisioning_status)),
    h("td", {}, badge(member.operating_status)),
    h("td", {}, enabled === false ? h("span", { class: "flag" }, "disabled") : ""),
    h("td", {}, enabled === null ? ""
      : action(state, `member:${member.id}`, enabled ? "Disable" : "Enable",
        { action: "member-toggle", id: member.id, pool: pool.id, enable: enabled ? "no" : "yes" })));
}

export function amphorae(state) {
  const amps = state.amphorae;
  if (!Array.isArray(amps)) return h("p", { class: "error" }, amps?.message || "Loading…");
  if (!amps.length) return h("p", { class: "muted" }, "No amphorae.");
  const names = new Map(state.lbs.map((lb) => [lb.id, lb.name || shortId(lb.id)]));
  return h("table", { class: "amphorae" },
    h("thead", {}, h("tr", {}, ["amphora", "load balancer", "role", "status", "management",
      "updated", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, amps.map((a) => h("tr", { dataset: { amphora: a.id } },
      h("td", { class: "mono", title: a.id }, shortId(a.id)),
      h("td", {}, names.get(a.loadbalancer_id) || shortId(a.loadbalancer_id)),
      h("td", {}, a.role || "—"),
      h("td", {}, badge(a.status)),
      h("td", { class: "mono" }, a.lb_network_ip || "—"),
      h("td", {}, clock(a.updated_at || a.created_at)),
      h("td", {}, a.status === "ALLOCATED" || a.status === "ERROR"
        ? action(state, `amp-failover:${a.id}`, "Failover", { action: "amp-failover", id: a.id }, true)
        : "")))));
}

export function events(state) {
  const list = state.events;
  if (!Array.isArray(list)) return h("p", { class: "muted" }, list?.message || "Loading…");
  if (!list.length) return h("p", { class: "muted" }, "No events.");
  const names = new Map(state.lbs.map((lb) => [lb.id, lb.name || shortId(lb.id)]));
  return h("ol", { class: "events" }, list.map((e) => h("li", {
    class: `event level-${(e.level || "").toLowerCase()} kind-${(e.kind || "").toLowerCase()}`,
  },
  h("time", { datetime: e.created_at }, clock(e.created_at)), badge(e.level), " ",
  h("span", { class: "kind" }, e.kind), " ",
  e.load_balancer_id && h("span", { class: "tag" }, names.get(e.load_balancer_id) || shortId(e.load_balancer_id)),
  " ", h("span", { class: "message" }, e.message))));
}
