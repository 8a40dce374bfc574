// The web view's script: listens to shmesh's server-sent events
// (/ui/events) and redraws the page from each state they carry, without
// reloading it. Every name from the configuration is set as text, never as
// markup.
"use strict";

const TYPES_ORDER = ["CDS", "EDS", "LDS", "RDS", "VHDS", "SDS"];

// Builds an element: h("p", {class: "x"}, "text", child, [more]).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function empty(text) {
  return h("p", { class: "empty" }, text);
}

function policyKey(kind, namespace, name) {
  return `${kind}/${namespace}/${name}`;
}

// A version hash is long; its first characters tell versions apart.
function shortVersion(version) {
  return version.length > 10 ? version.slice(0, 10) : version;
}

function percent(weight, total) {
  if (total <= 0) return "0%";
  const p = (100 * weight) / total;
  return Number.isInteger(p) ? `${p}%` : `${p.toFixed(1)}%`;
}

function destinationName(d) {
  let name = d.host;
  if (d.subset) name += ` · subset ${d.subset}`;
  if (d.port) name += ` · port ${d.port}`;
  return name;
}

// A badge that says in words whether a rollout is live.
function rolloutBadge(report) {
  if (!report) return null;
  if (!report.acked.length && !report.pending.length) {
    return h("span", { class: "badge idle" }, "no proxy receives it");
  }
  if (report.live) {
    return h("span", { class: "badge live" }, "✓ live");
  }
  const n = report.pending.length;
  return h("span", { class: "badge pending" }, `⋯ pending on ${n} ${n === 1 ? "proxy" : "proxies"}`);
}

function renderSplit(route) {
  const total = route.destinations.reduce((sum, d) => sum + d.weight, 0);
  const label = route.destinations
    .map((d) => `${destinationName(d)} ${percent(d.weight, total)}`)
    .join(", ");
  // The stacked bar shows the split at a glance; the list beside it says
  // the same in words.
  const bar = h("div", { class: "split-bar", role: "img", "aria-label": `Traffic split: ${label}` });
  route.destinations.forEach((d, i) => {
    if (d.weight <= 0 || total <= 0) return;
    const segment = h("span", { class: `segment c${i % 6}`, title: `${destinationName(d)}: ${percent(d.weight, total)}` });
    segment.style.width = `${(100 * d.weight) / total}%`;
    segment.append(h("span", { class: "segment-label" }, `${d.subset || d.host.split(".")[0]} ${percent(d.weight, total)}`));
    bar.append(segment);
  });
  const list = h("ul", { class: "destinations" },
    route.destinations.map((d, i) =>
      h("li", {
          class: "dest",
          "data-host": d.host,
          "data-subset": d.subset || "",
          "data-weight": d.weight,
        },
        h("span", { class: `swatch c${i % 6}`, "aria-hidden": "true" }),
        h("span", { class: "dest-name" }, destinationName(d)),
        h("span", { class: "weight" }, `weight ${d.weight} (${percent(d.weight, total)})`))));
  return [bar, list];
}

function renderRoute(route, index) {
  const title = route.name || `route ${index + 1}`;
  const matches = route.matches.length ? route.matches.join(" or ") : "anything";
  return h("li", { class: "route", "data-route": title },
    h("p", { class: "route-head" },
      h("strong", null, title), " ",
      h("span", { class: "protocol" }, route.protocol.toUpperCase()), " ",
      h("span", { class: "matches" }, `matches ${matches}`)),
    route.action ? h("p", { class: "action" }, route.action) : null,
    route.destinations.length ? renderSplit(route) : null);
}

function renderRoutes(state, rollouts) {
  if (!state.virtual_services.length) return empty("No VirtualService is in force.");
  return state.virtual_services.map((vs) => {
    const report = rollouts.get(policyKey("VirtualService", vs.namespace, vs.name));
    const meta = [`VirtualService ${vs.namespace}/${vs.name}`];
    if (vs.generation !== null && vs.generation !== undefined) meta.push(`generation ${vs.generation}`);
    meta.push(`version ${shortVersion(vs.version)}`);
    if (vs.gateways.length) meta.push(`gateways ${vs.gateways.join(", ")}`);
    if (vs.source) meta.push(`from ${vs.source}`);
    return h("article", { class: "vs", "data-key": policyKey("VirtualService", vs.namespace, vs.name) },
      h("h3", null, vs.hosts.join(", ") || `${vs.namespace}/${vs.name}`),
      h("p", { class: "meta" }, meta.join(" · "), " ", rolloutBadge(report)),
      vs.routes.length
        ? h("ol", { class: "routes" }, vs.routes.map(renderRoute))
        : empty("No routes."));
  });
}

function names(list) {
  return list.length ? list.join(", ") : "none";
}

function renderRollouts(state) {
  if (!state.rollouts.length) return empty("No policies are in force.");
  return h("table", null,
    h("caption", { class: "visually-hidden" }, "Rollout of each policy version"),
    h("thead", null, h("tr", null,
      h("th", { scope: "col" }, "Policy"),
      h("th", { scope: "col" }, "Version"),
      h("th", { scope: "col" }, "Status"),
      h("th", { scope: "col" }, "Applied by"),
      h("th", { scope: "col" }, "Waiting for"))),
    h("tbody", null, state.rollouts.map((r) =>
      h("tr", { "data-key": policyKey(r.kind, r.namespace, r.name), "data-live": String(r.live) },
        h("th", { scope: "row" }, `${r.kind} ${r.namespace}/${r.name}`),
        h("td", null,
          r.generation !== null && r.generation !== undefined ? `gen ${r.generation} · ` : "",
          h("code", { title: r.version }, shortVersion(r.version))),
        h("td", null, rolloutBadge(r)),
        h("td", { class: "acked" }, names(r.acked)),
        h("td", { class: r.pending.length ? "pending waiting" : "pending" }, names(r.pending))))));
}

function renderProblems(state) {
  const { errors, warnings } = state.problems;
  if (!errors.length && !warnings.length) return empty("No problems: every object was accepted and every reference resolves.");
  const out = [];
  if (errors.length) {
    out.push(h("h3", null, `Errors (${errors.length})`),
      h("p", { class: "hint" }, "Rejected objects; their last good version is still served."),
      h("ul", { class: "errors" }, errors.map((e) => h("li", null, h("span", { class: "badge error" }, "error"), " ", e))));
  }
  if (warnings.length) {
    out.push(h("h3", null, `Warnings (${warnings.length})`),
      h("ul", { class: "warnings" }, warnings.map((w) => h("li", null, h("span", { class: "badge warning" }, "warning"), " ", w))));
  }
  return out;
}

function renderProxies(state) {
  if (!state.proxies.length) return empty("No proxy is connected.");
  const present = new Set(state.proxies.flatMap((p) => p.types.map((t) => t.type)));
  const types = TYPES_ORDER.filter((t) => present.has(t));
  return h("table", null,
    h("caption", { class: "visually-hidden" }, "Connected proxies and what they have applied"),
    h("thead", null, h("tr", null,
      h("th", { scope: "col" }, "Proxy"),
      h("th", { scope: "col" }, "Type"),
      h("th", { scope: "col" }, "Protocol"),
      h("th", { scope: "col" }, "Version"),
      types.map((t) => h("th", { scope: "col" }, t)),
      h("th", { scope: "col" }, "Last rejection"))),
    h("tbody", null, state.proxies.map((p) => {
      const byType = new Map(p.types.map((t) => [t.type, t]));
      return h("tr", { "data-node": p.node_id },
        h("th", { scope: "row", title: p.node_id }, p.name),
        h("td", null, p.proxy_type || "–"),
        h("td", null, p.protocol),
        h("td", null, p.proxy_version || "–", p.istio_version ? ` (Istio ${p.istio_version})` : ""),
        types.map((t) => {
          const s = byType.get(t);
          if (!s) return h("td", null, "–");
          const cls = s.status === "SYNCED" ? "synced" : s.status === "STALE" ? "stale" : "not-sent";
          return h("td", { class: `sync ${cls}`, title: s.error || (s.acked ? `applied ${s.acked}` : "") }, s.status);
        }),
        h("td", { class: p.last_nack ? "nack" : null }, p.last_nack || "–"));
    })));
}

function render(state) {
  const rollouts = new Map(state.rollouts.map((r) => [policyKey(r.kind, r.namespace, r.name), r]));
  document.getElementById("instance").textContent = state.instance ? `on ${state.instance}` : "";
  document.getElementById("routes-body").replaceChildren(...[renderRoutes(state, rollouts)].flat());
  document.getElementById("rollouts-body").replaceChildren(...[renderRollouts(state)].flat());
  document.getElementById("problems-body").replaceChildren(...[renderProblems(state)].flat());
  document.getElementById("proxies-body").replaceChildren(...[renderProxies(state)].flat());
  const pending = state.rollouts.filter((r) => !r.live).length;
  document.title = pending ? `shmesh (${pending} pending)` : "shmesh";
}

function connect() {
  const status = document.getElementById("connection");
  const events = new EventSource("/ui/events");
  const updated = document.getElementById("updated");
  // The status is announced to screen readers when the connection comes or
  // goes, not on every update.
  events.addEventListener("open", () => {
    status.textContent = "Live.";
    status.className = "connection connected";
  });
  events.addEventListener("state", (event) => {
    let state;
    try {
      state = JSON.parse(event.data);
    } catch (e) {
      updated.textContent = `Cannot read an update: ${e}`;
      return;
    }
    render(state);
    const when = new Date().toLocaleTimeString();
    updated.textContent = state.ready
      ? `Updated at ${when}.`
      : `Updated at ${when}; shmesh is still waiting for its sources to sync.`;
  });
  // The browser reconnects by itself, after the delay the server gave.
  events.addEventListener("error", () => {
    status.textContent = "Disconnected from shmesh; reconnecting…";
    status.className = "connection disconnected";
  });
}

connect();
