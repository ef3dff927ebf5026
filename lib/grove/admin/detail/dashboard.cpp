#include <grove/admin/detail/dashboard.hpp>

namespace grove::admin::detail {

namespace {

constexpr std::string_view page = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>grove node</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2327; background: #fafafa; }
  h1 { font-size: 1.3em; margin: 0 0 .3em; }
  #status { display: inline-block; padding: .1em .6em; border-radius: 1em; font-size: .85em; background: #ddd; }
  #status.live { background: #c9f0d1; } #status.down { background: #f6c9c9; }
  .panels { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
  table { border-collapse: collapse; } td { padding: .15em .8em .15em 0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
  ul.tree, ul.tree ul { list-style: none; padding-left: 1.2em; margin: 0; border-left: 1px dotted #bbb; }
  ul.tree { border-left: none; padding-left: 0; }
  .proc { white-space: nowrap; } .pid { font-family: ui-monospace, monospace; color: #555; }
  .id { font-weight: 600; } .kind { color: #0b5cad; } .label { color: #6b4f00; }
  .bad { color: #b00020; font-weight: 600; } .meta { color: #777; font-size: .9em; }
</style>
</head>
<body data-snapshots="0">
<h1>grove node <span id="node">?</span> <span id="status">connecting</span></h1>
<div class="meta">updated <span id="updated">never</span> · <span id="count">0</span> processes</div>
<div class="panels">
  <section><h2>Rates</h2><table id="rates"></table></section>
  <section><h2>Supervision tree</h2><ul class="tree" id="tree"></ul></section>
</div>
<script>
"use strict";
const rateRows = [
  ["erps calls/s", "grove_erps_calls_total", true], ["erps casts/s", "grove_erps_casts_total", true],
  ["erps pushes/s", "grove_erps_pushes_total", true], ["erps errors/s", "grove_erps_errors_total", true],
  ["bytes in/s", "grove_erps_received_bytes_total", true], ["bytes out/s", "grove_erps_sent_bytes_total", true],
  ["processes spawned/s", "grove_processes_spawned_total", true], ["process exits/s", "grove_process_exits_total", true],
  ["restarts/s", "grove_supervisor_restarts_total", true],
  ["processes", "grove_processes", false], ["erps connections", "grove_erps_connections", false],
  ["deepest mailbox", "grove_mailbox_depth_high_water", false]
];
let previous = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function drawRates(snapshot) {
  const table = document.getElementById("rates");
  table.replaceChildren();
  const m = snapshot.metrics || {};
  const seconds = previous ? (snapshot.at - previous.at) / 1000 : 0;
  for (const [title, name, isRate] of rateRows) {
    let value = "–";
    if (!isRate && name in m) value = m[name];
    if (isRate && previous && seconds > 0 && name in m) {
      const before = (previous.metrics || {})[name] || 0;
      value = Math.max(0, (m[name] - before) / seconds).toFixed(1);
    }
    const row = el("tr");
    row.append(el("td", "", title), el("td", "n", value));
    row.dataset.metric = name;
    table.append(row);
  }
}

function drawProcess(p) {
  const li = el("li");
  const line = el("div", "proc");
  if (p.pid) li.dataset.pid = p.pid;
  if (p.id !== undefined) { li.dataset.id = p.id; line.append(el("span", "id", p.id), " "); }
  line.append(el("span", "pid", p.pid || "(not running)"), " ");
  if (p.kind) line.append(el("span", "kind", p.kind), " ");
  if (p.label) line.append(el("span", "label", p.label), " ");
  const facts = [];
  if (p.status && p.status !== "running") facts.push(p.status);
  if (p.restarts !== undefined) { facts.push("restarts " + p.restarts); li.dataset.restarts = p.restarts; }
  if (p.supervisor) facts.push(p.supervisor.strategy + ", " + p.supervisor.restarts + " restarts");
  if (p.mailbox !== undefined) facts.push("mailbox " + p.mailbox);
  line.append(el("span", "meta", facts.join(" · ")));
  if (p.supervisor_error) line.append(" ", el("span", "bad", p.supervisor_error));
  li.append(line);
  const kids = p.children || [];
  if (kids.length || p.more_children) {
    const ul = el("ul");
    for (const c of kids) ul.append(drawProcess(c));
    if (p.more_children) ul.append(el("li", "meta", "… and " + p.more_children + " more"));
    li.append(ul);
  }
  return li;
}

function draw(snapshot) {
  const tree = snapshot.tree || {};
  document.getElementById("node").textContent = tree.node;
  document.getElementById("count").textContent = tree.processes;
  document.getElementById("updated").textContent = new Date(snapshot.at).toLocaleTimeString();
  const root = document.getElementById("tree");
  root.replaceChildren(...(tree.roots || []).map(drawProcess));
  if (tree.more_roots) root.append(el("li", "meta", "… and " + tree.more_roots + " more"));
  drawRates(snapshot);
  previous = snapshot;
  document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots) + 1);
}

const token = new URLSearchParams(location.search).get("access_token");
const source = new EventSource("events" + (token ? "?access_token=" + encodeURIComponent(token) : ""));
const status = document.getElementById("status");
source.addEventListener("snapshot", (e) => {
  status.textContent = "live"; status.className = "live";
  draw(JSON.parse(e.data));
});
source.onerror = () => { status.textContent = "disconnected, retrying"; status.className = "down"; };
</script>
</body>
</html>
)html";

} // namespace

std::string_view dashboard_html() noexcept { return page; }

} // namespace grove::admin::detail
