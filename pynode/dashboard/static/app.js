"use strict";
// pynode dashboard page: state from /api/state, then live updates from /api/events (SSE).
(function () {
  const SLOTS = 16384, COLS = 128, CELL = 4;
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#17becf", "#bcbd22", "#393b79", "#637939", "#843c39"];
  const colours = {};       // node id -> colour, stable while the page is open
  let nextColour = 0;
  let snap = null, readOnly = true, owners = new Array(SLOTS).fill(null), chaos = null;
  const seen = new Set();   // event ids already shown
  const $ = (id) => document.getElementById(id);

  function colourOf(id) {
    if (!id) return "#dddddd";
    if (!(id in colours)) colours[id] = PALETTE[nextColour++ % PALETTE.length];
    return colours[id];
  }
  function nodeById(id) { return snap && snap.nodes.find((n) => n.id === id); }
  function short(n) { return n ? n.addr : "?"; }
  function bytes(v) {
    if (v === null || v === undefined) return "";
    const u = ["B", "K", "M", "G", "T"]; let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v) + u[i];
  }
  function text(v) { return v === null || v === undefined ? "" : String(v); }
  function el(tag, attrs, kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === "text") e.textContent = attrs[k]; else if (k === "class") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (kids || []).forEach((c) => e.appendChild(c));
    return e;
  }

  function drawSlots() {
    owners = new Array(SLOTS).fill(null);
    const marks = [];
    snap.nodes.forEach((n) => {
      n.slots.forEach(([a, b]) => { for (let s = a; s <= b; s++) owners[s] = n.id; });
      Object.keys(n.migrating || {}).forEach((s) => marks.push(+s));
      Object.keys(n.importing || {}).forEach((s) => marks.push(+s));
    });
    // colours assigned in shard order so that they stay stable
    snap.shards.forEach((s) => colourOf(s.primary));
    const ctx = $("slotmap").getContext("2d");
    ctx.fillStyle = "#dddddd"; ctx.fillRect(0, 0, COLS * CELL, COLS * CELL);
    for (let row = 0; row < SLOTS / COLS; row++) {
      const end = (row + 1) * COLS;
      for (let s = row * COLS; s < end;) {
        let e = s + 1;
        while (e < end && owners[e] === owners[s]) e++;
        ctx.fillStyle = colourOf(owners[s]);
        ctx.fillRect((s % COLS) * CELL, row * CELL, (e - s) * CELL, CELL);
        s = e;
      }
    }
    ctx.fillStyle = "#ffffff";
    marks.forEach((s) => ctx.fillRect((s % COLS) * CELL + 2, Math.floor(s / COLS) * CELL + 2, 2, 2));
    const legend = $("legend"); legend.textContent = "";
    snap.shards.forEach((s) => {
      const p = nodeById(s.primary);
      legend.appendChild(el("div", {}, [el("span", {class: "swatch", style: "background:" + colourOf(s.primary)}),
        el("span", {text: short(p) + "  " + s.slot_count + " slots, " + s.replicas.length + " replica(s)"})]));
    });
  }

  function nodeRow(n, replica) {
    const cells = [n.addr, n.id.slice(0, 8), n.role === "master" ? "primary" : n.role === "slave" ? "replica" : "?",
      n.flags.filter((f) => f !== "master" && f !== "slave" && f !== "myself").join(","), n.link, n.config_epoch,
      n.role === "master" ? n.slot_count : "", text(n.ops), bytes(n.memory), text(n.clients),
      text(n.keys), n.lag === null ? "" : bytes(n.lag)];
    const tr = el("tr", {class: (replica ? "replica" : "primary") + (n.up ? "" : " down"),
                         "data-node": n.id, "data-addr": n.addr},
                  cells.map((c, i) => el("td", {text: text(c), class: i === 3 ? "flags" : ""})));
    const td = el("td");
    if (!readOnly && n.role === "slave") {
      const b = el("button", {text: "Failover", class: "failover", "data-node": n.id});
      b.addEventListener("click", () => act("failover", {node: n.id},
        "Manual failover: make replica " + n.addr + " the primary of its shard?"));
      td.appendChild(b);
    }
    if (!n.up) td.appendChild(el("span", {class: "note", text: " unreachable"}));
    tr.appendChild(td);
    return tr;
  }

  function drawNodes() {
    const body = $("nodes").tBodies[0]; body.textContent = "";
    const placed = new Set();
    snap.shards.forEach((s) => {
      const p = nodeById(s.primary); placed.add(p.id); body.appendChild(nodeRow(p, false));
      s.replicas.forEach((rid) => { const r = nodeById(rid); if (r) { placed.add(rid); body.appendChild(nodeRow(r, true)); } });
    });
    snap.nodes.filter((n) => !placed.has(n.id)).forEach((n) => body.appendChild(nodeRow(n, n.role === "slave")));
  }

  function drawHot() {
    const box = $("hot"); box.textContent = "";
    if (!snap.slot_stats_supported) {
      box.appendChild(el("p", {class: "note", text: "The nodes do not answer CLUSTER SLOT-STATS (Valkey 8 / Redis 8.2 have it)."}));
      return;
    }
    const cols = ["slot", "key-count", "cpu-usec", "memory-bytes", "network-bytes-in", "network-bytes-out"];
    const t = el("table", {}, [el("tr", {}, cols.concat(["node"]).map((c) => el("th", {text: c})))]);
    snap.hot_slots.forEach((s) => t.appendChild(el("tr", {}, cols.map((c) => el("td", {text: text(s[c])}))
      .concat([el("td", {text: short(nodeById(s.node))})]))));
    box.appendChild(t);
  }

  function drawSelects() {
    const prim = snap.nodes.filter((n) => n.role === "master");
    const fill = (sel, list, first) => {
      const keep = sel.value; sel.textContent = "";
      if (first) sel.appendChild(el("option", {value: "", text: first}));
      list.forEach((n) => sel.appendChild(el("option", {value: n.id, text: n.addr + " " + n.id.slice(0, 8)})));
      sel.value = keep;
      if (sel.selectedIndex < 0) sel.selectedIndex = 0;
    };
    fill($("move-target"), prim);
    fill($("add-primary"), prim, "primary");
    fill($("forget-node"), snap.nodes);
  }

  function addEvents(events) {
    const ul = $("events");
    events.forEach((e) => {
      if (seen.has(e.id)) return; seen.add(e.id);
      const li = el("li", {class: e.kind, "data-kind": e.kind},
        [el("span", {class: "t", text: new Date(e.time * 1000).toLocaleTimeString()}), el("span", {text: e.text})]);
      ul.insertBefore(li, ul.firstChild);
    });
    while (ul.children.length > 500) ul.removeChild(ul.lastChild);
  }

  // -- chaos: pynode chaos's log and its actions --------------------------------------
  const UNDOES = {thaw: "freeze", restart: "kill", fast: "slow", "fast-disk": "slow-disk", heal: "partition"};

  function openOf(addr, action) {
    return (chaos.entries || []).some((e) => e.open && e.node === addr && e.action === action);
  }

  function drawChaos() {
    $("chaos-log-path").textContent = chaos.log_path;
    const local = snap ? snap.nodes.filter((n) => (chaos.nodes[n.id] || {}).local) : [];
    const sel = $("chaos-node"), keep = sel.value;
    sel.textContent = "";
    (snap ? snap.nodes : []).forEach((n) => sel.appendChild(el("option", {value: n.id,
      text: n.addr + " " + n.id.slice(0, 8) + (n.role === "master" ? " primary" : " replica")})));
    sel.value = keep; if (sel.selectedIndex < 0) sel.selectedIndex = 0;
    const node = nodeById(sel.value), info = node ? chaos.nodes[node.id] || {} : {};
    const peers = $("chaos-peers"), chosen = new Set(Array.from(peers.selectedOptions).map((o) => o.value));
    peers.textContent = "";
    (snap ? snap.nodes : []).filter((n) => !node || n.id !== node.id).forEach((n) =>
      peers.appendChild(el("option", {value: n.id, text: n.addr})));
    Array.from(peers.options).forEach((o) => { o.selected = chosen.has(o.value); });
    let note = "";
    if (snap && !local.length)
      note = "None of the nodes is a process of this machine: chaos actions signal the node's process and read /proc, " +
        "so they need the dashboard on the nodes' machine. The buttons are disabled.";
    else if (node && !node.up)
      note = node.addr + " does not answer the dashboard: breaking it is off; what the log holds can be undone.";
    else if (node && !info.local)
      note = node.addr + " is not a process of this machine (" + info.why + "): chaos actions need the dashboard " +
        "on the node's machine; only undoing what the log holds is possible.";
    if (chaos.error) note = (note ? note + " " : "") + "The log cannot be read: " + chaos.error;
    $("chaos-note").textContent = note;
    document.querySelectorAll("#chaos-controls button[data-act]").forEach((b) => {
      const act = b.dataset.act;
      b.disabled = !node || (act in UNDOES ? !openOf(node.addr, UNDOES[act]) : !info.local);
    });
    $("chaos-undo-all").disabled = !(chaos.entries || []).some((e) => e.open);
    const body = $("chaos-log").tBodies[0]; body.textContent = "";
    (chaos.entries || []).slice().reverse().forEach((e) => {
      const d = Object.keys(e.details).sort().map((k) => k + "=" + JSON.stringify(e.details[k])).join(" ");
      const tr = el("tr", {class: e.open ? "open" : "", "data-id": e.id}, [e.id,
        e.time ? new Date(e.time * 1000).toLocaleTimeString() : "", e.action, e.node,
        e.open ? "open" : "done", d].map((c) => el("td", {text: text(c)})));
      const td = el("td");
      if (e.open && !readOnly) {
        const b = el("button", {text: "Undo", class: "chaos-undo", "data-id": e.id});
        b.addEventListener("click", () => act("chaos-undo", {id: e.id}, "Undo " + e.action + " of " + e.node + " (#" + e.id + ")?"));
        td.appendChild(b);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    });
  }

  const CHAOS_ASK = {
    freeze: (a) => "Freeze " + a + " (SIGSTOP: it stops answering until thawed)?",
    thaw: (a) => "Thaw " + a + " (SIGCONT)?",
    kill: (a) => "Kill " + a + " with SIGKILL (kill -9)? Restart brings it back with the same command line.",
    restart: (a) => "Restart " + a + " the way it was started?",
    slow: (a) => "Slow " + a + " down: stopped " + $("chaos-stop-ms").value + " ms of every " + $("chaos-every-ms").value + " ms?",
    fast: (a) => "Stop slowing " + a + "?",
    "slow-disk": (a) => "Make " + a + " sleep " + $("chaos-usec").value + " us before each AOF write?",
    "fast-disk": (a) => "Give " + a + " its normal AOF writes back?",
    partition: (a) => {
      const p = Array.from($("chaos-peers").selectedOptions).map((o) => o.text);
      return "Partition " + a + (p.length ? " from " + p.join(", ") : " from every peer (isolate)") +
        ($("chaos-one-way").checked ? ", one way" : "") + "?";
    },
    heal: (a) => "Heal every partition of " + a + "?",
  };

  document.querySelectorAll("#chaos-controls button[data-act]").forEach((b) => b.addEventListener("click", () => {
    const node = nodeById($("chaos-node").value);
    if (!node) return;
    const kind = b.dataset.act, params = {node: node.id};
    if (kind === "slow") { params.stop_ms = +$("chaos-stop-ms").value; params.every_ms = +$("chaos-every-ms").value; }
    if (kind === "slow-disk") params.usec = +$("chaos-usec").value;
    if (kind === "partition") {
      params.peers = Array.from($("chaos-peers").selectedOptions).map((o) => o.value);
      params.one_way = $("chaos-one-way").checked;
    }
    act("chaos-" + kind, params, CHAOS_ASK[kind](node.addr));
  }));
  $("chaos-node").addEventListener("change", () => { if (chaos) drawChaos(); });
  $("chaos-undo-all").addEventListener("click", () =>
    act("chaos-undo", {}, "Undo every open chaos action, newest first?"));

  function render(data) {
    readOnly = data.read_only;
    $("ro").hidden = !readOnly;
    $("actions").hidden = readOnly;
    $("chaos-controls").hidden = readOnly;
    if (data.login !== undefined) $("logout").hidden = !data.login;
    if (data.events) addEvents(data.events);
    if (!data.snapshot) return;
    snap = data.snapshot;
    const st = snap.cluster.state || "unknown";
    $("state").textContent = snap.reachable ? "cluster " + st : "no node answers";
    $("state").className = "badge " + (snap.reachable && st === "ok" ? "ok" : "fail");
    $("summary").textContent = snap.shards.length + " shards, " + snap.nodes.length + " nodes, current epoch " +
      text(snap.cluster.current_epoch) + ", " + text(snap.cluster.slots_assigned) + " slots assigned";
    $("updated").textContent = "updated " + new Date(snap.time * 1000).toLocaleTimeString();
    drawSlots(); drawNodes(); drawHot(); if (!readOnly) drawSelects();
    if (data.chaos) { chaos = data.chaos; drawChaos(); }
  }

  async function act(name, params, question) {
    if (!window.confirm(question)) return;
    const out = $(name.startsWith("chaos-") ? "chaos-result" : "action-result");
    out.textContent = name + " ...";
    try {
      const r = await fetch("/api/action/" + name, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-Pynode-Dashboard": "1"}, body: JSON.stringify(params)});
      const body = await r.json();
      out.textContent = r.ok ? body.output : "error: " + body.error;
      if (name.startsWith("chaos-"))       // show the log at once, not at the next poll
        fetch("/api/state", {credentials: "same-origin"}).then((r) => r.json()).then(render).catch(() => {});
    } catch (e) { out.textContent = "error: " + e; }
  }

  $("slotmap").addEventListener("mousemove", (ev) => {
    const r = ev.target.getBoundingClientRect();
    const s = Math.floor((ev.clientY - r.top) / CELL) * COLS + Math.floor((ev.clientX - r.left) / CELL);
    if (s < 0 || s >= SLOTS) return;
    $("slotinfo").textContent = "slot " + s + ": " + (owners[s] ? short(nodeById(owners[s])) : "unassigned");
  });
  $("move-form").addEventListener("submit", (e) => { e.preventDefault();
    const t = nodeById($("move-target").value);
    act("move-slots", {slots: $("move-slots").value, target: $("move-target").value},
        "Move slots " + $("move-slots").value + " to " + short(t) + "?"); });
  $("rebalance-form").addEventListener("submit", (e) => { e.preventDefault();
    act("rebalance", {use_empty_masters: $("rebalance-empty").checked}, "Rebalance the slots over the primaries?"); });
  $("add-form").addEventListener("submit", (e) => { e.preventDefault();
    act("add-node", {addr: $("add-addr").value, primary: $("add-primary").value}, "Add " + $("add-addr").value + " to the cluster?"); });
  $("forget-form").addEventListener("submit", (e) => { e.preventDefault();
    const n = nodeById($("forget-node").value);
    act("forget-node", {node: $("forget-node").value}, "Remove " + short(n) + " from the cluster?"); });

  // for tests and the curious: what the page believes
  window.pynodeDashboard = {
    owner: (slot) => owners[slot],
    colour: (id) => colourOf(id),
    pixel: (slot) => {
      const d = $("slotmap").getContext("2d").getImageData((slot % COLS) * CELL, Math.floor(slot / COLS) * CELL, 1, 1).data;
      return "#" + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join("");
    },
    snapshot: () => snap,
  };

  fetch("/api/state", {credentials: "same-origin"}).then((r) => r.json()).then(render).catch(() => {});
  const es = new EventSource("/api/events");
  es.addEventListener("state", (e) => render(JSON.parse(e.data)));
  es.addEventListener("update", (e) => render(JSON.parse(e.data)));
  es.onerror = () => { $("state").textContent = "dashboard unreachable"; $("state").className = "badge fail"; };
})();
