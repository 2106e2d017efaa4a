// lineage-hub console: runs, lineage graphs and traces, one page per run.
// Every text that comes from a store goes into the page through textContent (el()),
// never as HTML, so a dataset, job or column name cannot inject markup or script.
"use strict";

const API = "/api/v1";
const $main = () => document.getElementById("main");
let CONFIG = { links: {}, defaultNamespace: "default" };

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const badge = (text) => el("span", { class: `badge ${String(text || "")}` }, text || "–");
const link = (href, text) => el("a", { href }, text);
const q = (params) => new URLSearchParams(params).toString();

function show(...nodes) {
  const main = $main();
  main.replaceChildren(...nodes);
}

async function api(path, init) {
  const headers = { ...((init && init.headers) || {}) };
  const token = sessionStorage.getItem("lh-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    const reply = await fetch(path, { ...(init || {}), headers });
    let body = null;
    try { body = await reply.json(); } catch (e) { body = null; }
    return { ok: reply.ok, status: reply.status, body };
  } catch (err) {
    return { ok: false, status: 0, body: { detail: `the gateway did not answer: ${err}` } };
  }
}

function detail(reply) {
  const d = reply.body && reply.body.detail;
  if (Array.isArray(d)) return d.map((x) => `${x.param || x.loc || ""}: ${x.message || x.msg}`).join("; ");
  return d || `HTTP ${reply.status}`;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
}

function problem(what, reply) {
  if (reply.status === 401) {
    return el("div", { class: "error-box" }, `${what}: this gateway wants a token. `,
      el("button", { type: "button", onclick: askToken }, "Set token"));
  }
  if (reply.status === 403) return el("div", { class: "error-box" }, `${what}: the token lacks the scope (${detail(reply)}).`);
  const store = reply.body && reply.body.store;
  const where = store ? ` (${store} is unavailable; the rest of the page still works)` : "";
  return el("div", { class: "error-box", "data-problem": what }, `${what}: ${detail(reply)}${where}`);
}

function notFound(text) {
  show(el("div", { class: "card notfound", id: "not-found" }, el("h1", {}, "Not found"), el("p", {}, text),
    link("/console/", "Back to the runs")));
}

function askToken() {
  const token = window.prompt("Gateway token (kept in this tab only):", sessionStorage.getItem("lh-token") || "");
  if (token !== null) { sessionStorage.setItem("lh-token", token.trim()); route(); }
}

// fmtSeconds, fmtDuration and statusDuration: durations.js.

function age(iso) {
  if (!iso) return "–";
  const s = (Date.now() - new Date(iso)) / 1000;
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 86400) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

function condition(status, type) {
  return ((status && status.conditions) || []).find((c) => c.type === type) || null;
}

function parseNode(id) {
  // Marquez's ids: namespaces may hold "://" and a port (see lineagehub/lineage_ids.py).
  const kind = id.slice(0, id.indexOf(":"));
  let rest = id.slice(kind.length + 1);
  let namespace;
  const schemed = rest.match(/^([A-Za-z][A-Za-z0-9+.\-]*:\/\/[^:/]*(?::\d+)?):([\s\S]+)$/);
  if (schemed) { namespace = schemed[1]; rest = schemed[2]; }
  else { namespace = rest.slice(0, rest.indexOf(":")); rest = rest.slice(namespace.length + 1); }
  if (kind === "datasetField") {
    const cut = rest.lastIndexOf(":");
    return { kind, namespace, name: rest.slice(0, cut), field: rest.slice(cut + 1) };
  }
  return { kind, namespace, name: rest };
}

const datasetHref = (ns, name) => `/console/dataset?${q({ namespace: ns, name })}`;
const jobHref = (ns, name) => `/console/job?${q({ namespace: ns, name })}`;

// ---------------------------------------------------------------- graph (ELK layout)

const elk = typeof ELK === "function" ? new ELK() : null;

function nodeSize(label, sub) {
  const chars = Math.max(label.length, (sub || "").length);
  return { width: Math.min(340, Math.max(90, 14 + chars * 6.9)), height: sub ? 40 : 28 };
}

function clip(text, n) { return text.length > n ? `${text.slice(0, n - 1)}…` : text; }

// nodes: [{id, label, sub, kind, focus}], edges: [{source, target}]
async function drawGraph(container, nodes, edges, onClick) {
  container.replaceChildren(el("p", { class: "muted" }, "Laying out…"));
  if (!elk) { container.replaceChildren(el("p", { class: "error-box" }, "graph layout library missing")); return null; }
  const known = new Set(nodes.map((n) => n.id));
  const graph = {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered", "elk.direction": "RIGHT",
      "elk.spacing.nodeNode": "18", "elk.layered.spacing.nodeNodeBetweenLayers": "50",
      "elk.edgeRouting": "SPLINES",
    },
    children: nodes.map((n) => ({ id: n.id, ...nodeSize(clip(n.label, 46), n.sub && clip(n.sub, 50)) })),
    edges: edges.filter((e) => known.has(e.source) && known.has(e.target))
      .map((e, i) => ({ id: `e${i}`, sources: [e.source], targets: [e.target] })),
  };
  const laid = await elk.layout(graph);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const width = laid.width + 20;
  const height = laid.height + 20;
  // Fit a graph up to twice the box's width (text stays readable); scroll a bigger one.
  const room = Math.max(container.clientWidth - 4, 600);
  const scale = width <= 2 * room ? Math.min(1, room / width) : 1;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
    width: Math.round(width * scale), height: Math.round(height * scale) });
  const g = svg("g", { transform: "translate(10,10)" });
  root.append(svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }))));
  const edgeEls = new Map();
  for (const e of laid.edges || []) {
    for (const s of e.sections || []) {
      const pts = [s.startPoint, ...(s.bendPoints || []), s.endPoint];
      const d = pts.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
      const path = svg("path", { class: "edge", d, "marker-end": "url(#arrow)", "data-source": e.sources[0], "data-target": e.targets[0] });
      edgeEls.set(e.id, path);
      g.append(path);
    }
  }
  for (const c of laid.children) {
    const n = byId.get(c.id);
    const title = svg("title", {}, n.id);
    const box = svg("g", {
      class: `node ${n.kind}${n.focus ? " focus" : ""}`, transform: `translate(${c.x},${c.y})`,
      "data-id": n.id, onclick: () => onClick && onClick(n),
    }, title, svg("rect", { width: c.width, height: c.height, rx: 5 }),
    svg("text", { x: 7, y: 17 }, clip(n.label, 46)),
    n.sub ? svg("text", { x: 7, y: 32, fill: "#64748b" }, clip(n.sub, 50)) : null);
    g.append(box);
  }
  root.append(g);
  container.replaceChildren(root);
  return root;
}

function graphFromLineage(body, focusId) {
  const nodes = body.graph.map((n) => {
    const p = parseNode(n.id);
    const run = n.data && n.data.latestRun;
    return {
      id: n.id, kind: n.type === "JOB" ? "job" : "dataset", focus: n.id === focusId,
      label: p.name, sub: n.type === "JOB" ? `${p.namespace}${run ? ` · ${run.state}` : ""}` : p.namespace,
      parsed: p,
    };
  });
  const edges = body.graph.flatMap((n) => n.outEdges.map((e) => ({ source: e.origin, target: e.destination })));
  return { nodes, edges };
}

function openNode(n) {
  const p = n.parsed || parseNode(n.id);
  window.location.href = p.kind === "job" ? jobHref(p.namespace, p.name) : datasetHref(p.namespace, p.name);
}

// ---------------------------------------------------------------- runs

let runsStream = null;

function runsRow(r) {
  const s = r.status || {};
  const lineage = condition(s, "LineageRecorded");
  const trace = condition(s, "TraceRecorded");
  const load = (s.stages || []).find((x) => x.name === "load");
  return el("tr", { "data-run": r.name },
    el("td", {}, link(`/console/run/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`, r.name)),
    el("td", {}, r.namespace),
    el("td", {}, badge(r.phase || "Pending")),
    el("td", {}, s.currentStage || ""),
    el("td", {}, s.progress || ""),
    el("td", { class: "num" }, load && load.recordsOut !== undefined ? load.recordsOut : ""),
    durationCell(statusDuration(s)),
    el("td", {}, lineage ? badge(lineage.status) : ""),
    el("td", {}, trace ? badge(trace.status) : ""),
    el("td", { class: "num" }, age(r.createdAt)));
}

async function runsPage() {
  const params = new URLSearchParams(location.search);
  const ns = el("input", { id: "f-namespace", value: params.get("namespace") || CONFIG.defaultNamespace, size: 14 });
  const phase = el("select", { id: "f-phase" }, ["", "Pending", "Running", "Succeeded", "Failed", "Cancelled"]
    .map((p) => el("option", { value: p, selected: p === (params.get("phase") || "") }, p || "any phase")));
  const name = el("input", { id: "f-name", placeholder: "name contains", value: params.get("name") || "", size: 16 });
  const live = el("span", { class: "live off", id: "live" }, "connecting…");
  const tbody = el("tbody", { id: "runs" });
  const problemBox = el("div");
  let items = [];
  const render = () => {
    const wanted = items.filter((r) => (!phase.value || (r.phase || "Pending") === phase.value)
      && (!name.value || r.name.includes(name.value)));
    tbody.replaceChildren(...(wanted.length ? wanted.map(runsRow)
      : [el("tr", {}, el("td", { colspan: 10, class: "muted" }, "No runs match."))]));
  };
  const connect = () => {
    if (runsStream) runsStream.abort();
    runsStream = new AbortController();
    streamRuns(ns.value.trim(), runsStream.signal, (kind, data) => {
      if (kind === "runs") { items = data.items; problemBox.replaceChildren(); render(); live.textContent = "live"; live.className = "live"; }
      else if (kind === "error") { problemBox.replaceChildren(el("div", { class: "error-box" }, `Runs: ${data.detail}`)); }
      else if (kind === "closed") { live.textContent = "reconnecting…"; live.className = "live off"; }
      else if (kind === "http") { problemBox.replaceChildren(problem("Runs", data)); live.textContent = "off"; }
    });
  };
  ns.addEventListener("change", connect);
  phase.addEventListener("change", render);
  name.addEventListener("input", render);
  show(el("h1", {}, "Pipeline runs"),
    el("div", { class: "filters" }, el("label", {}, "Namespace ", ns), phase, name, live),
    problemBox,
    el("table", {}, el("thead", {}, el("tr", {}, ["Name", "Namespace", "Phase", "Stage", "Progress", "Records", "Duration", "Lineage", "Trace", "Age"]
      .map((h) => el("th", {}, h)))), tbody));
  connect();
}

async function streamRuns(namespace, signal, onEvent) {
  // Server-sent events over fetch (EventSource cannot send the Authorization header).
  const headers = {};
  const token = sessionStorage.getItem("lh-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  while (!signal.aborted) {
    try {
      const reply = await fetch(`${API}/pipeline/runs/stream?${q({ namespace })}`, { headers, signal });
      if (!reply.ok) {
        let body = null;
        try { body = await reply.json(); } catch (e) { body = null; }
        onEvent("http", { status: reply.status, body });
        return;
      }
      const reader = reply.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message"; let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) kind = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) onEvent(kind, JSON.parse(data));
        }
      }
    } catch (err) {
      if (signal.aborted) return;
    }
    onEvent("closed", null);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------------------------------------------------------------- one run

function waterfall(spans) {
  if (!spans.length) return el("p", { class: "muted" }, "No spans in ClickHouse for this trace yet.");
  const byParent = new Map();
  const ids = new Set(spans.map((s) => s.spanId));
  for (const s of spans) {
    const parent = ids.has(s.parentSpanId) ? s.parentSpanId : "";
    if (!byParent.has(parent)) byParent.set(parent, []);
    byParent.get(parent).push(s);
  }
  const start = Math.min(...spans.map((s) => s.startNs));
  const end = Math.max(...spans.map((s) => s.startNs + s.durationNs));
  const total = Math.max(end - start, 1);
  const rows = [];
  const walk = (parent, depth) => {
    for (const s of (byParent.get(parent) || []).sort((a, b) => a.startNs - b.startNs)) {
      const left = ((s.startNs - start) / total) * 100;
      const width = Math.max((s.durationNs / total) * 100, 0.2);
      const error = s.status === "Error";
      const stage = s.name.startsWith("stage ");
      rows.push(el("div", { class: "wf-row", "data-span": s.name, title: s.message || s.name },
        el("div", { class: "wf-name", style: `padding-left:${depth * 14}px` }, `${s.name}`, el("span", { class: "muted" }, `  ${s.service}`)),
        el("div", { class: "wf-track" }, el("div", { class: `wf-bar${error ? " error" : ""}${stage ? " stage" : ""}`, style: `left:${left}%;width:${width}%` })),
        el("div", { class: "wf-dur" }, fmtSeconds(s.durationNs / 1e9))));
      walk(s.spanId, depth + 1);
    }
  };
  walk("", 0);
  return el("div", { class: "waterfall card", id: "waterfall" }, rows);
}

function qualityTable(status) {
  const checks = ((status.stages || []).find((s) => s.name === "transform") || {}).quality || [];
  if (!checks.length) return el("p", { class: "muted" }, "No quality checks reported.");
  return el("table", { id: "quality" }, el("thead", {}, el("tr", {}, ["Verdict", "Check", "Column", "Severity", "Failed rows", "Failing samples"].map((h) => el("th", {}, h)))),
    el("tbody", {}, checks.map((c) => {
      const verdict = c.success ? "PASS" : (c.severity === "warn" ? "WARN" : "FAIL");
      return el("tr", { "data-check": c.name || c.type },
        el("td", {}, badge(verdict)), el("td", {}, c.name || c.type), el("td", {}, c.column || ""),
        el("td", {}, c.severity || ""), el("td", { class: "num" }, c.failedRows ?? ""),
        el("td", {}, (c.sample || []).map((v) => el("code", {}, String(v))).reduce((acc, x) => acc.concat(acc.length ? [", ", x] : [x]), [])));
    })));
}

async function runGraph(runId, box, fieldsBox) {
  const run = await api(`${API}/lineage/runs/${encodeURIComponent(runId)}`);
  if (!run.ok) { box.replaceChildren(problem("Lineage", run)); return; }
  const stages = await Promise.all(run.body.children.map((c) => api(`${API}/lineage/runs/${encodeURIComponent(c.runId)}`)));
  const nodes = new Map();
  const edges = [];
  const datasets = new Map();
  const addDataset = (d) => {
    const id = `dataset:${d.namespace}:${d.name}`;
    datasets.set(id, d);
    if (!nodes.has(id)) nodes.set(id, { id, kind: "dataset", label: d.name, sub: `${d.namespace}${d.rowCount !== null && d.rowCount !== undefined ? ` · ${d.rowCount} rows` : ""}`, parsed: { kind: "dataset", namespace: d.namespace, name: d.name } });
    return id;
  };
  const parts = stages.filter((s) => s.ok).map((s) => s.body);
  for (const stage of parts.length ? parts : [run.body]) {
    const p = parseNode(stage.job);
    nodes.set(stage.job, { id: stage.job, kind: "job", label: p.name, sub: `${p.namespace} · ${stage.state}`, parsed: p });
    for (const d of stage.inputs) edges.push({ source: addDataset(d), target: stage.job });
    for (const d of stage.outputs) edges.push({ source: stage.job, target: addDataset(d) });
  }
  await drawGraph(box, [...nodes.values()], edges, (n) => {
    if (n.kind !== "dataset") { openNode(n); return; }
    const d = datasets.get(n.id);
    fieldsBox.replaceChildren(el("div", {}, el("strong", {}, `${d.name}`), " — click a column to see the columns it comes from; ",
      link(datasetHref(d.namespace, d.name), "open the dataset")),
      el("div", { class: "fields", id: "fields" }, (d.fields || []).map((f) => el("button", {
        type: "button", "data-field": f.name,
        onclick: (ev) => columnUpstream(d, f.name, ev.target, fieldsBox, box),
      }, f.name))), el("div", { id: "column-upstream" }));
  });
}

async function columnUpstream(d, field, button, fieldsBox, graphBox) {
  for (const b of fieldsBox.querySelectorAll(".fields button")) b.classList.toggle("on", b === button);
  const out = fieldsBox.querySelector("#column-upstream");
  const nodeId = `datasetField:${d.namespace}:${d.name}:${field}`;
  const reply = await api(`${API}/column-lineage?${q({ nodeId, upstreamDepth: 10, downstreamDepth: 0 })}`);
  if (!reply.ok) { out.replaceChildren(problem("Column lineage", reply)); return; }
  const upstream = reply.body.graph.filter((n) => n.id !== nodeId && n.type === "DATASET_FIELD");
  const lit = new Set(upstream.map((n) => `dataset:${n.data.namespace}:${n.data.dataset}`));
  for (const g of graphBox.querySelectorAll(".node")) g.classList.toggle("lit", lit.has(g.getAttribute("data-id")));
  out.replaceChildren(el("h3", {}, `${field} comes from`),
    upstream.length ? el("ul", { id: "upstream-columns" }, upstream.map((n) => {
      const into = reply.body.edges.filter((e) => e.origin === n.id);
      const how = into.flatMap((e) => (e.transformations || []).map((t) => `${t.type}${t.subtype ? `/${t.subtype}` : ""}${t.description ? `: ${t.description}` : ""}`));
      return el("li", { "data-column": `${n.data.dataset}:${n.data.field}` }, el("code", {}, `${n.data.namespace}:${n.data.dataset}`), " . ", el("strong", {}, n.data.field),
        how.length ? el("span", { class: "muted" }, `  ${[...new Set(how)].join("; ")}`) : null);
    })) : el("p", { class: "muted" }, "No upstream columns recorded."));
}

const STAGE_COLUMNS = [["Stage"], ["Phase"], ["Attempts"], ["Rows in"], ["Rows out"],
  ["Duration", "From the run's status: the stage's Job created -> the stage seen ending"],
  ["Work (trace)", "The stage's own span in the run's trace"], ["Message"]];
const STAGES_NOTE = "Duration: from the run's status, the stage's Job created to the stage seen ending "
  + "(to the millisecond; its pod's start-up included). Work (trace): the stage's own span in the run's trace, "
  + "the stage process's work alone.";

/** A table cell showing a statusDuration, saying in its attributes which times it is from. */
function durationCell(d) {
  return el("td", {
    class: "num duration", "data-seconds": d ? d.seconds : null, "data-precise": d ? (d.precise ? "1" : "0") : null,
    title: d && !d.precise ? "from whole-second times: known to the second only" : null,
  }, fmtDuration(d));
}

/** Each stage row's Work cell: its `stage <name>` span's duration, when the trace has it. */
function stageWork(spans) {
  for (const row of document.querySelectorAll("#stages tbody tr[data-stage]")) {
    const span = spans.find((x) => x.name === `stage ${row.getAttribute("data-stage")}`);
    const cell = row.querySelector(".stage-work");
    cell.textContent = span ? fmtSeconds(span.durationNs / 1e9) : "–";
    if (span) cell.setAttribute("data-span-ns", String(span.durationNs));
  }
}

async function runPage(ns, name) {
  const reply = await api(`${API}/pipeline/run/${encodeURIComponent(name)}?${q({ namespace: ns })}`);
  if (reply.status === 404) { notFound(`There is no PipelineRun ${ns}/${name}.`); return; }
  if (!reply.ok) { show(el("h1", {}, `${ns}/${name}`), problem("Run", reply)); return; }
  const s = reply.body.status || {};
  const succeeded = condition(s, "Succeeded");
  const lineage = condition(s, "LineageRecorded");
  const trace = condition(s, "TraceRecorded");
  const waterfallBox = el("div", { id: "waterfall-box" }, el("p", { class: "muted" }, "Loading spans…"));
  const graphBox = el("div", { class: "graph", id: "lineage-graph" }, el("p", { class: "muted" }, "Loading lineage…"));
  const fieldsBox = el("div", { class: "card", id: "fields-box" }, el("span", { class: "muted" }, "Click a dataset in the graph to see its columns."));
  const eventsBox = el("div", {}, el("p", { class: "muted" }, "Loading events…"));
  const links = CONFIG.links || {};
  const outLinks = [];
  if (links.marquez && s.runId) outLinks.push(link(`${links.marquez}/api/v1/jobs/runs/${s.runId}`, "Marquez"));
  if (links.jaeger && s.traceId) outLinks.push(link(`${links.jaeger}/trace/${s.traceId}`, "Jaeger"));
  if (links.grafana && s.runId) outLinks.push(link(`${links.grafana}/d/lineagehub-run-detail/run-detail?var-run_id=${s.runId}`, "Grafana"));
  const jobs = (s.stages || []).map((st) => st.jobName).filter(Boolean);
  const actionBox = el("div", { id: "action-result" });
  const act = async (what, call) => {
    const r = await call();
    if (r.ok) return r;
    actionBox.replaceChildren(problem(what, r));
    return null;
  };
  const running = ["Pending", "Running", undefined, null].includes(reply.body.phase);
  const actions = el("div", { class: "filters", id: "actions" },
    running ? el("button", { type: "button", id: "cancel-run", onclick: async () => {
      if (!window.confirm(`Cancel ${ns}/${name}?`)) return;
      if (await act("Cancel", () => post(`${API}/pipeline/run/${encodeURIComponent(name)}/cancel?${q({ namespace: ns })}`))) route();
    } }, "Cancel run") : null,
    el("button", { type: "button", id: "run-again", onclick: async () => {
      const r = await act("Run again", () => post(`${API}/pipeline/run/${encodeURIComponent(name)}/again?${q({ namespace: ns })}`));
      if (r) { window.history.pushState({}, "", `/console/run/${encodeURIComponent(r.body.namespace)}/${encodeURIComponent(r.body.name)}`); route(); }
    } }, "Run again"),
    el("span", { class: "muted" }, "(needs a token with runs:write)"));
  show(
    el("h1", {}, `${name} `, badge(reply.body.phase || "Pending")),
    el("div", { class: "card" },
      el("div", {}, el("span", { class: "muted" }, "namespace "), ns, el("span", { class: "muted" }, "   run id "), el("code", {}, s.runId || "–"),
        el("span", { class: "muted" }, "   trace id "), el("code", {}, s.traceId || "–")),
      succeeded ? el("div", { id: "run-reason" }, el("strong", {}, succeeded.reason), `: ${succeeded.message}`) : null,
      el("div", {}, "Lineage ", badge(lineage ? lineage.status : "Unknown"), lineage ? ` ${lineage.message}` : "",
        el("br"), "Trace ", badge(trace ? trace.status : "Unknown"), trace ? ` ${trace.message}` : ""),
      outLinks.length ? el("div", { class: "links" }, "Open in ", outLinks) : null),
    actions, actionBox,
    el("h2", {}, "Stages"),
    el("table", { id: "stages" }, el("thead", {}, el("tr", {}, STAGE_COLUMNS.map(([h, tip], i) => el("th", { class: i >= 2 && i <= 6 ? "num" : null, title: tip }, h)))),
      el("tbody", {}, (s.stages || []).map((st) => el("tr", { "data-stage": st.name }, el("td", {}, st.name), el("td", {}, badge(st.phase)), el("td", { class: "num" }, st.attempts ?? ""),
        el("td", { class: "num" }, st.recordsIn ?? "–"), el("td", { class: "num" }, st.recordsOut ?? "–"),
        durationCell(statusDuration(st)), el("td", { class: "num stage-work" }, "…"), el("td", {}, st.message || ""))))),
    el("p", { class: "muted", id: "stages-note" }, STAGES_NOTE),
    el("h2", {}, "Timeline (the run's trace)"), waterfallBox,
    el("h2", {}, "Lineage"), graphBox, fieldsBox,
    el("h2", {}, "Quality"), qualityTable(s),
    el("h2", {}, "Kubernetes events"), eventsBox,
    el("h2", {}, "kubectl"),
    el("pre", {}, [`kubectl get pipelinerun ${name} -n ${ns}`, `kubectl describe pipelinerun ${name} -n ${ns}`,
      ...jobs.map((j) => `kubectl logs job/${j} -n ${ns}`), `lineage-hub describe ${name} -n ${ns}`].join("\n")),
  );
  if (s.traceId) {
    api(`${API}/traces/${s.traceId}/spans`).then((r) => {
      waterfallBox.replaceChildren(r.ok ? waterfall(r.body.spans) : problem("Trace", r));
      stageWork(r.ok ? r.body.spans : []);
    });
  } else { waterfallBox.replaceChildren(el("p", { class: "muted" }, "No trace yet.")); stageWork([]); }
  if (s.runId) runGraph(s.runId, graphBox, fieldsBox).catch((e) => graphBox.replaceChildren(el("div", { class: "error-box" }, `Lineage: ${e}`)));
  else graphBox.replaceChildren(el("p", { class: "muted" }, "No run id yet."));
  api(`${API}/pipeline/run/${encodeURIComponent(name)}/events?${q({ namespace: ns })}`).then((r) => {
    if (!r.ok) { eventsBox.replaceChildren(problem("Events", r)); return; }
    eventsBox.replaceChildren(r.body.items.length ? el("table", { id: "events" }, el("tbody", {}, r.body.items.map((e) => el("tr", {},
      el("td", {}, badge(e.type)), el("td", {}, e.reason), el("td", {}, e.message), el("td", { class: "num" }, age(e.time)))))) : el("p", { class: "muted" }, "No events."));
  });
}

// ---------------------------------------------------------------- dataset and job

async function datasetPage(ns, name, params) {
  if (!ns || !name) { notFound("A dataset page needs ?namespace= and ?name=."); return; }
  const reply = await api(`${API}/lineage/dataset?${q({ namespace: ns, name })}`);
  if (reply.status === 404) { notFound(`The lineage warehouse knows no dataset ${ns}:${name}.`); return; }
  if (!reply.ok) { show(el("h1", {}, name), problem("Dataset", reply)); return; }
  const d = reply.body;
  const depth = (key) => { const v = Number(params.get(key) ?? 3); return [0, 1, 2, 3, 5, 10].includes(v) ? v : 3; };
  const up = el("select", { id: "up-depth" }, [0, 1, 2, 3, 5, 10].map((v) => el("option", { value: v, selected: v === depth("up") }, `${v} up`)));
  const down = el("select", { id: "down-depth" }, [0, 1, 2, 3, 5, 10].map((v) => el("option", { value: v, selected: v === depth("down") }, `${v} down`)));
  const graphBox = el("div", { class: "graph", id: "dataset-graph" });
  const runsTable = (runs) => runs.length ? el("table", {}, el("tbody", {}, runs.map((r) => el("tr", {},
    el("td", {}, badge(r.state)), el("td", {}, r.job ? link(jobHref(parseNode(r.job).namespace, parseNode(r.job).name), parseNode(r.job).name) : ""),
    el("td", {}, el("code", {}, r.runId)), el("td", { class: "num" }, r.rowCount ?? "–"), el("td", { class: "num" }, age(r.endTime || r.startTime)))))) : el("p", { class: "muted" }, "None.");
  const drawn = async () => {
    const g = await api(`${API}/lineage?${q({ nodeId: d.id, upstreamDepth: up.value, downstreamDepth: down.value })}`);
    if (!g.ok) { graphBox.replaceChildren(problem("Graph", g)); return; }
    const { nodes, edges } = graphFromLineage(g.body, d.id);
    await drawGraph(graphBox, nodes, edges, openNode);
    if (g.body.truncated) graphBox.prepend(el("p", { class: "muted" }, "The graph was cut at the node limit."));
  };
  up.addEventListener("change", drawn);
  down.addEventListener("change", drawn);
  show(el("h1", {}, name), el("p", { class: "muted" }, ns),
    el("div", { class: "grid" },
      el("div", { class: "card" }, el("strong", {}, "Freshness "), d.freshnessSeconds === null ? "never written successfully" : `${fmtSeconds(d.freshnessSeconds)} since the last successful write (${d.lastSuccessfulWrite})`),
      el("div", { class: "card" }, el("strong", {}, "Schema "), el("table", { id: "schema" }, el("tbody", {}, d.fields.map((f) => el("tr", {}, el("td", {}, f.name), el("td", { class: "muted" }, f.type || "")))))),
    ),
    el("h2", {}, "Graph"), el("div", { class: "filters" }, "Depth ", up, down), graphBox,
    el("h2", {}, "Schema versions"),
    el("table", { id: "versions" }, el("thead", {}, el("tr", {}, ["Since", "Run", "Fields", "What changed"].map((h) => el("th", {}, h)))),
      el("tbody", {}, d.versions.map((v) => el("tr", {}, el("td", {}, v.since), el("td", {}, el("code", {}, v.runId || "")),
        el("td", {}, v.fields.map((f) => f.name).join(", ")),
        el("td", {}, v.changes ? [v.changes.added.length ? `added ${v.changes.added.join(", ")}` : "", v.changes.removed.length ? `removed ${v.changes.removed.join(", ")}` : "",
          ...v.changes.typeChanged.map((c) => `${c.name}: ${c.from} → ${c.to}`)].filter(Boolean).join("; ") || "no change" : "first version"))))),
    el("h2", {}, "Written by"), runsTable(d.writtenBy),
    el("h2", {}, "Read by"), runsTable(d.readBy));
  drawn();
}

async function jobPage(ns, name) {
  if (!ns || !name) { notFound("A job page needs ?namespace= and ?name=."); return; }
  const reply = await api(`${API}/lineage/job?${q({ namespace: ns, name, limit: 100 })}`);
  if (reply.status === 404) { notFound(`The lineage warehouse has no run of job ${ns}:${name}.`); return; }
  if (!reply.ok) { show(el("h1", {}, name), problem("Job", reply)); return; }
  const runs = reply.body.runs;
  const canvas = el("canvas", { id: "job-chart", "aria-label": "run durations" });
  const graphBox = el("div", { class: "graph", id: "job-graph" });
  show(el("h1", {}, name), el("p", { class: "muted" }, ns),
    el("h2", {}, "Run history"), el("div", { class: "card chart-box" }, canvas),
    el("table", { id: "job-runs" }, el("thead", {}, el("tr", {}, ["State", "Started", "Duration", "Rows in", "Rows out", "Run", "Trace"].map((h) => el("th", {}, h)))),
      el("tbody", {}, runs.map((r) => el("tr", {}, el("td", {}, badge(r.state)), el("td", {}, r.startTime || ""), el("td", { class: "num" }, fmtSeconds(r.durationSeconds)),
        el("td", { class: "num" }, r.rowsInput ?? "–"), el("td", { class: "num" }, r.rowsOutput ?? "–"), el("td", {}, el("code", {}, r.runId)),
        el("td", {}, r.traceId ? (CONFIG.links.jaeger ? link(`${CONFIG.links.jaeger}/trace/${r.traceId}`, r.traceId.slice(0, 12)) : el("code", {}, r.traceId.slice(0, 12))) : "–"))))),
    el("h2", {}, "Latest graph"), graphBox);
  const ordered = [...runs].reverse();
  const colors = { COMPLETE: "#16a34a", FAIL: "#dc2626", ABORT: "#d97706" };
  if (typeof Chart === "function") {
    new Chart(canvas, {
      type: "bar",
      data: { labels: ordered.map((r) => (r.startTime || "").replace("T", " ").slice(0, 19)),
        datasets: [{ label: "duration (s)", data: ordered.map((r) => r.durationSeconds ?? 0), backgroundColor: ordered.map((r) => colors[r.state] || "#2563eb") }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, plugins: { legend: { display: false } } },
    });
  }
  const g = await api(`${API}/lineage?${q({ nodeId: `job:${ns}:${name}`, depth: 1 })}`);
  if (!g.ok) { graphBox.replaceChildren(problem("Graph", g)); return; }
  const { nodes, edges } = graphFromLineage(g.body, `job:${ns}:${name}`);
  await drawGraph(graphBox, nodes, edges, openNode);
}

// ---------------------------------------------------------------- dashboards

/** A value as Grafana shows it in `unit` (the units our dashboards use). */
function formatUnit(value, unit) {
  const n = Number(value);
  if (value === null || value === undefined || value === "" || Number.isNaN(n)) return String(value ?? "–");
  const fixed = (x, d) => (Math.round(x * 10 ** d) / 10 ** d).toLocaleString("en-US");
  switch (unit) {
    case "percentunit": return `${fixed(n * 100, 1)}%`;
    case "percent": return `${fixed(n, 1)}%`;
    case "s": return n >= 3600 ? `${fixed(n / 3600, 2)} h` : n >= 60 ? `${fixed(n / 60, 2)} min` : n >= 1 ? `${fixed(n, 2)} s` : `${fixed(n * 1000, 0)} ms`;
    case "ms": return n >= 1000 ? formatUnit(n / 1000, "s") : `${fixed(n, 0)} ms`;
    case "bytes": {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0; let x = n;
      while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
      return `${fixed(x, i ? 1 : 0)} ${units[i]}`;
    }
    case "short": {
      const units = ["", " K", " Mil", " Bil", " Tri"];
      let i = 0; let x = n;
      while (Math.abs(x) >= 1000 && i < units.length - 1) { x /= 1000; i += 1; }
      return `${fixed(x, i ? 2 : 0)}${units[i]}`;
    }
    default: return fixed(n, 3);
  }
}

function panelView(panel, body) {
  const rows = body.rows[0] || [];
  const box = el("div", { class: "card", "data-panel": panel.title }, el("strong", {}, panel.title));
  if (!rows.length) { box.append(el("p", { class: "muted" }, "No data in this window.")); return box; }
  const columns = Object.keys(rows[0]);
  const numeric = columns.filter((c) => rows.every((r) => r[c] === null || !Number.isNaN(Number(r[c]))) && typeof rows[0][c] !== "object");
  if (panel.type === "stat") {
    // Every value of the first row (a p50 / p95 stat has two), in the panel's unit.
    box.append(el("div", { class: "stat-values" }, columns.map((c) =>
      el("span", { class: "stat-value", "data-column": c },
        columns.length > 1 ? el("span", { class: "muted" }, `${c} `) : null,
        formatUnit(rows[0][c], panel.unit)))));
    return box;
  }
  if ((panel.type === "timeseries" || panel.type === "barchart") && typeof Chart === "function" && numeric.length) {
    const labelCol = columns.find((c) => !numeric.includes(c)) || columns[0];
    const values = numeric.filter((c) => c !== labelCol);
    const canvas = el("canvas");
    box.append(el("div", { class: "chart-box" }, canvas));
    new Chart(canvas, {
      type: panel.type === "timeseries" ? "line" : "bar",
      data: { labels: rows.map((r) => String(r[labelCol])), datasets: values.map((c) => ({ label: c, data: rows.map((r) => Number(r[c])) })) },
      options: { responsive: true, maintainAspectRatio: false, animation: false },
    });
    return box;
  }
  box.append(el("table", {}, el("thead", {}, el("tr", {}, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, rows.slice(0, 50).map((r) => el("tr", {}, columns.map((c) => el("td", {}, typeof r[c] === "object" ? JSON.stringify(r[c]) : String(r[c]))))))));
  return box;
}

async function dashboardsPage() {
  const reply = await api(`${API}/dashboards`);
  if (!reply.ok) { show(el("h1", {}, "Dashboards"), problem("Dashboards", reply)); return; }
  const sections = [];
  for (const dash of reply.body.dashboards) {
    if (dash.variables.includes("run_id")) {
      sections.push(el("h2", {}, dash.title), el("p", { class: "muted" }, "Per run: open a run's page."));
      continue;
    }
    const grid = el("div", { class: "grid" });
    sections.push(el("h2", {}, dash.title), grid);
    for (const panel of dash.panels) {
      const slot = el("div", { class: "card" }, el("span", { class: "muted" }, `${panel.title}…`));
      grid.append(slot);
      api(`${API}/dashboards/${encodeURIComponent(dash.uid)}/panels/${panel.id}?${q({ hours: 24 * 7 })}`)
        .then((r) => slot.replaceWith(r.ok ? panelView(panel, r.body) : problem(panel.title, r)));
    }
  }
  show(el("h1", {}, "Dashboards"), el("p", { class: "muted" }, "The Grafana dashboards' panels: the same SQL on the same tables, last 7 days."), ...sections);
}

// ---------------------------------------------------------------- search and routing

function setupSearch() {
  const input = document.getElementById("search-q");
  const list = document.getElementById("search-results");
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const text = input.value.trim();
      if (!text) { list.hidden = true; return; }
      const r = await api(`${API}/lineage/search?${q({ q: text, limit: 15 })}`);
      list.replaceChildren(...(r.ok ? r.body.results.map((x) => el("li", {}, link(x.type === "JOB" ? jobHref(x.namespace, x.name) : datasetHref(x.namespace, x.name),
        `${x.type === "JOB" ? "job" : "dataset"} · ${x.name}  (${x.namespace})`))) : [el("li", {}, detail(r))]));
      if (r.ok && !r.body.results.length) list.replaceChildren(el("li", { class: "muted" }, " no match"));
      list.hidden = false;
    }, 200);
  });
  document.getElementById("search").addEventListener("submit", (e) => e.preventDefault());
  document.addEventListener("click", (e) => { if (!list.contains(e.target) && e.target !== input) list.hidden = true; });
  document.getElementById("token-button").addEventListener("click", askToken);
}

async function route() {
  if (runsStream) { runsStream.abort(); runsStream = null; }
  const path = location.pathname.replace(/\/+$/, "");
  const params = new URLSearchParams(location.search);
  const run = path.match(/^\/console\/run\/([^/]+)\/([^/]+)$/);
  if (path === "/console") return runsPage();
  if (run) return runPage(decodeURIComponent(run[1]), decodeURIComponent(run[2]));
  if (path === "/console/dataset") return datasetPage(params.get("namespace"), params.get("name"), params);
  if (path === "/console/job") return jobPage(params.get("namespace"), params.get("name"));
  if (path === "/console/dashboards") return dashboardsPage();
  return notFound(`No console page at ${location.pathname}.`);
}

window.addEventListener("popstate", () => route());

(async () => {
  const config = await api(`${API}/console/config`);
  if (config.ok) CONFIG = config.body;
  setupSearch();
  await route();
  document.body.setAttribute("data-ready", "1");
})();
