/**
 * The dashboard's script, served as /ui/app.js. Plain browser JavaScript in a string (no build
 * step, and `deno compile` includes it); it uses no template literals so that it can sit inside
 * this one. It polls /ui/cluster.json, which the node assembles from every member's /status.
 */
export const APP_JS = String.raw`"use strict";
(function () {
  var POLL_INTERVAL_MS = 1000;
  var POLL_TIMEOUT_MS = 4000;
  var KV_TIMEOUT_MS = 15000;
  var HISTORY_MAX = 8;
  /** A member silent for longer than this (ms) has likely missed an election timeout. */
  var CONTACT_WARN_MS = 1000;
  var CONTACT_BAD_MS = 3000;
  var LAG_WARN_ENTRIES = 100;
  var LAG_BAR_ENTRIES = 1000;

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fmtCount(n) { return n === null || n === undefined ? "—" : n.toLocaleString("en-US"); }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
  }

  function fmtTime(date) { return date.toTimeString().slice(0, 8); }

  function roleLabel(role) { return role === "preCandidate" ? "pre-candidate" : role; }

  // ---- members -------------------------------------------------------------------------------

  function memberCell(m) {
    var td = el("td");
    td.appendChild(el("span", "member-id", m.id));
    if (m.self) td.appendChild(el("span", "tag self", "this node"));
    if (!m.voter) td.appendChild(el("span", "tag", "learner"));
    td.appendChild(el("span", "member-url", m.url));
    return td;
  }

  function roleCell(m) {
    var td = el("td");
    var role = m.report ? m.report.role : "unknown";
    td.appendChild(el("span", "role " + role, m.report ? roleLabel(role) : "unreachable"));
    return td;
  }

  function numCell(value) { return el("td", "num", fmtCount(value)); }

  function lagCell(m) {
    var td = el("td");
    if (m.lagEntries === null) {
      td.appendChild(el("span", "muted", "—"));
      return td;
    }
    var level = m.lagEntries >= LAG_WARN_ENTRIES ? " warn" : "";
    if (!m.reachable && m.lagEntries > 0) level = " bad";
    var box = el("div", "lag" + level);
    var bar = el("div", "bar");
    var fill = el("div", "fill");
    // Logarithmic, so that a lag of a few entries shows and one of thousands fills the bar; an
    // empty bar reads as "in sync".
    var share = Math.log(1 + m.lagEntries) / Math.log(1 + LAG_BAR_ENTRIES);
    fill.style.width = Math.min(100, share * 100) + "%";
    bar.appendChild(fill);
    box.appendChild(bar);
    box.appendChild(el("span", "", fmtCount(m.lagEntries)));
    td.appendChild(box);
    return td;
  }

  function contactCell(m) {
    var td = el("td", "num contact", fmtMs(m.lastContactMs));
    if (m.lastContactMs >= CONTACT_BAD_MS) td.className += " bad";
    else if (m.lastContactMs >= CONTACT_WARN_MS) td.className += " warn";
    return td;
  }

  function statusCell(m) {
    var td = el("td");
    if (m.reachable) {
      td.appendChild(el("span", "status", m.self ? "up (serving this page)" : "up · " + m.responseMs + " ms"));
    } else {
      td.appendChild(el("span", "status down", "unreachable"));
      td.appendChild(el("span", "reason", m.error));
    }
    return td;
  }

  function memberRow(m, leaderId) {
    var tr = el("tr");
    tr.dataset.memberId = m.id;
    tr.dataset.role = m.report ? m.report.role : "unknown";
    tr.dataset.reachable = String(m.reachable);
    if (m.id === leaderId) tr.classList.add("leader");
    if (!m.reachable) tr.classList.add("unreachable");
    var r = m.report || {};
    tr.appendChild(memberCell(m));
    tr.appendChild(roleCell(m));
    tr.appendChild(numCell(r.term));
    tr.appendChild(numCell(r.commitIndex));
    tr.appendChild(numCell(r.appliedIndex));
    tr.appendChild(numCell(r.lastLogIndex));
    tr.appendChild(lagCell(m));
    tr.appendChild(contactCell(m));
    tr.appendChild(statusCell(m));
    return tr;
  }

  function renderSummary(view) {
    var leader = null;
    var up = 0;
    var votersUp = 0;
    var voters = 0;
    view.members.forEach(function (m) {
      if (m.id === view.leaderId) leader = m;
      if (m.reachable) up += 1;
      if (m.voter) voters += 1;
      if (m.voter && m.reachable) votersUp += 1;
    });
    var leaderCard = $("leader-id").parentElement;
    leaderCard.classList.toggle("leader", leader !== null);
    leaderCard.classList.toggle("bad", leader === null);
    $("leader-id").textContent = leader ? leader.id : "none";
    $("leader-url").textContent = leader ? leader.url : "no reachable member leads";
    $("term").textContent = fmtCount(leader ? leader.report.term : null);
    $("commit-index").textContent = fmtCount(leader ? leader.report.commitIndex : null);
    $("keys").textContent = fmtCount(leader ? leader.report.keys : null);
    $("members-up").textContent = up + " / " + view.members.length;
    var needed = Math.floor(voters / 2) + 1;
    var quorumCard = $("members-up").parentElement;
    quorumCard.classList.toggle("bad", votersUp < needed);
    $("quorum").textContent = (votersUp >= needed ? "quorum held" : "no quorum") + " · needs " +
      needed + " of " + voters;
  }

  function render(view) {
    $("cluster-id").textContent = view.clusterId;
    $("served-by").textContent = view.servedBy;
    renderSummary(view);
    var body = $("members-body");
    var rows = document.createDocumentFragment();
    view.members.forEach(function (m) { rows.appendChild(memberRow(m, view.leaderId)); });
    body.replaceChildren(rows);
  }

  function setLive(ok, detail) {
    var live = $("live");
    live.dataset.state = ok ? "ok" : "down";
    $("live-text").textContent = ok
      ? "live · updated " + fmtTime(new Date())
      : "this node is not answering (" + detail + ") · retrying";
    $("members").classList.toggle("stale", !ok);
  }

  /** The browser's own words ("Failed to fetch") say little: name the two usual cases. */
  function failureText(error) {
    if (error && error.name === "TimeoutError") return "no answer in time";
    if (error instanceof TypeError) return "no connection";
    return String((error && error.message) || error);
  }

  async function poll() {
    try {
      var response = await fetch("/ui/cluster.json", {
        cache: "no-store",
        signal: AbortSignal.timeout(POLL_TIMEOUT_MS),
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      setLive(true);
    } catch (error) {
      setLive(false, failureText(error));
    } finally {
      setTimeout(poll, POLL_INTERVAL_MS);
    }
  }

  // ---- key browser ---------------------------------------------------------------------------

  function showResult(state, parts) {
    var box = $("kv-result");
    box.dataset.state = state;
    box.replaceChildren();
    parts.forEach(function (part) {
      box.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
    });
  }

  function remember(op, key, ok, outcome) {
    var list = $("kv-history");
    var empty = list.querySelector(".empty");
    if (empty) empty.remove();
    var li = el("li");
    li.appendChild(el("span", "time", fmtTime(new Date())));
    li.appendChild(el("span", "op", op));
    li.appendChild(el("span", "key", key));
    li.appendChild(el("span", "outcome " + (ok ? "ok" : "bad"), outcome));
    list.prepend(li);
    while (list.children.length > HISTORY_MAX) list.lastElementChild.remove();
  }

  function describe(op, key, status, body) {
    var quotedKey = JSON.stringify(key);
    if (status === 200 && op === "get") {
      return { state: "ok", short: "found", parts: [quotedKey + " = ", el("span", "value", JSON.stringify(body.value)),
        " (last changed at index " + body.index + ")"] };
    }
    if (status === 200 && op === "set") {
      return { state: "ok", short: "index " + body.index, parts: ["Set " + quotedKey + ": committed at index " + body.index + "."] };
    }
    if (status === 200 && op === "delete") {
      return body.deleted
        ? { state: "ok", short: "deleted", parts: ["Deleted " + quotedKey + "."] }
        : { state: "missing", short: "absent", parts: [quotedKey + " did not exist: nothing to delete."] };
    }
    if (status === 404 && op === "get") {
      return { state: "missing", short: "not found", parts: [quotedKey + " is not set."] };
    }
    var error = body && body.error ? body.error : "unexpected answer";
    return { state: "error", short: String(status), parts: [op + " failed (HTTP " + status + "): " + error] };
  }

  async function kvCall(op) {
    var key = $("kv-key").value;
    if (key === "") {
      showResult("error", ["Enter a key first."]);
      $("kv-key").focus();
      return;
    }
    var params = op === "set" ? { key: key, value: $("kv-value").value } : { key: key };
    var buttons = document.querySelectorAll(".buttons button");
    buttons.forEach(function (b) { b.disabled = true; });
    showResult("idle", [op + " " + JSON.stringify(key) + "…"]);
    try {
      var response = await fetch("/" + op, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(params),
        signal: AbortSignal.timeout(KV_TIMEOUT_MS),
      });
      var body = await response.json().catch(function () { return null; });
      var result = describe(op, key, response.status, body);
      showResult(result.state, result.parts);
      remember(op, key, result.state !== "error", result.short);
    } catch (error) {
      showResult("error", [op + " failed: " + failureText(error)]);
      remember(op, key, false, "failed");
    } finally {
      buttons.forEach(function (b) { b.disabled = false; });
    }
  }

  function start() {
    $("kv-form").addEventListener("submit", function (event) {
      event.preventDefault();
      kvCall("get");
    });
    $("kv-set").addEventListener("click", function () { kvCall("set"); });
    $("kv-delete").addEventListener("click", function () { kvCall("delete"); });
    poll();
  }

  start();
})();
`;
