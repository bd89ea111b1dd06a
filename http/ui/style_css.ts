/** The dashboard's stylesheet (a module so that `deno compile` includes it). */
export const STYLE_CSS = `
:root {
  --bg: #f4f6f9;
  --panel: #ffffff;
  --ink: #1d2533;
  --muted: #667085;
  --line: #e3e7ee;
  --accent: #2f6fed;
  --leader: #12805c;
  --leader-bg: #ecf8f2;
  --warn: #b25e09;
  --warn-bg: #fff5e6;
  --bad: #c4322b;
  --bad-bg: #fdeeee;
  --mono: ui-monospace, "SFMono-Regular", "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
body {
  margin: 0;
  background: var(--bg);
  color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
}
code { font-family: var(--mono); font-size: 0.92em; }

.topbar {
  display: flex;
  align-items: center;
  justify-content: space-between;
  padding: 12px 28px;
  background: #172033;
  color: #e9eef7;
}
.brand { display: flex; align-items: baseline; gap: 12px; }
.logo { font-weight: 700; font-size: 20px; letter-spacing: 0.2px; }
.subtitle { color: #9fb0cc; }
.meta { display: flex; align-items: center; gap: 22px; color: #b9c5da; }
.meta code { color: #ffffff; }
.live { display: inline-flex; align-items: center; gap: 7px; }
.live .dot { width: 9px; height: 9px; border-radius: 50%; background: #8c97a8; }
.live[data-state="ok"] .dot { background: #3ccf8e; box-shadow: 0 0 0 3px rgba(60, 207, 142, 0.25); }
.live[data-state="down"] .dot { background: #ff6b61; box-shadow: 0 0 0 3px rgba(255, 107, 97, 0.25); }
.live[data-state="down"] { color: #ffb4ae; }

main { max-width: 1240px; margin: 0 auto; padding: 18px 20px 28px; }

.cards { display: grid; grid-template-columns: 1.5fr 1fr 1fr 1.2fr 1fr; gap: 14px; margin-bottom: 16px; }
.card {
  background: var(--panel);
  border: 1px solid var(--line);
  border-radius: 10px;
  padding: 12px 16px;
  min-width: 0;
}
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: 0.6px; }
.card .value {
  font-size: 24px;
  font-weight: 650;
  font-variant-numeric: tabular-nums;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}
.card .hint { color: var(--muted); font-size: 12px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.card.leader .value { color: var(--leader); }
.card.bad .value { color: var(--bad); }

.panel {
  background: var(--panel);
  border: 1px solid var(--line);
  border-radius: 10px;
  padding: 14px 18px 16px;
  margin-bottom: 16px;
}
.panel-head { display: flex; align-items: baseline; gap: 16px; margin-bottom: 8px; }
h2 { font-size: 16px; margin: 0; white-space: nowrap; }
h3 { font-size: 13px; margin: 0 0 6px; color: var(--muted); font-weight: 600; }
.note { color: var(--muted); font-size: 12px; }

table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th {
  text-align: left;
  font-size: 12px;
  font-weight: 600;
  color: var(--muted);
  padding: 6px 10px;
  border-bottom: 1px solid var(--line);
  white-space: nowrap;
}
td { padding: 9px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap; }
tbody tr:last-child td { border-bottom: none; }
.num { text-align: right; }
td.num { font-family: var(--mono); font-size: 13px; }
tr.placeholder td { color: var(--muted); text-align: center; padding: 22px; }
tr.leader td { background: var(--leader-bg); }
tr.leader td:first-child { box-shadow: inset 4px 0 0 var(--leader); }
tr.unreachable td { color: #98a2b3; }
tr.unreachable td:first-child { box-shadow: inset 4px 0 0 var(--bad); }
table.stale { opacity: 0.55; }

.member-id { font-weight: 650; }
.member-url { display: block; color: var(--muted); font-family: var(--mono); font-size: 12px; }
.tag {
  display: inline-block;
  margin-left: 6px;
  padding: 0 6px;
  border-radius: 4px;
  font-size: 11px;
  background: #eef2f7;
  color: var(--muted);
  vertical-align: 1px;
}
.tag.self { background: #e8f0fe; color: var(--accent); }

.role {
  display: inline-block;
  min-width: 84px;
  padding: 2px 10px;
  border-radius: 999px;
  font-size: 12px;
  font-weight: 600;
  text-align: center;
  background: #eef2f7;
  color: #475467;
}
.role.leader { background: var(--leader); color: #ffffff; }
.role.candidate, .role.preCandidate { background: var(--warn-bg); color: var(--warn); }
.role.unknown { background: var(--bad-bg); color: var(--bad); }

.lag { display: flex; align-items: center; gap: 8px; font-family: var(--mono); font-size: 13px; }
.lag .bar { flex: 0 0 90px; height: 6px; border-radius: 3px; background: #edf0f5; overflow: hidden; }
.lag .fill { height: 100%; width: 0; background: var(--leader); }
.lag.warn .fill { background: var(--warn); }
.lag.bad .fill { background: var(--bad); }
.contact.warn { color: var(--warn); }
.contact.bad { color: var(--bad); font-weight: 600; }

.status { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.status::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #3ccf8e; }
.status.down { color: var(--bad); font-weight: 600; }
.status.down::before { background: var(--bad); flex: 0 0 8px; }
.muted { color: var(--muted); }
.reason { display: block; margin-left: 14px; color: var(--bad); font-size: 12px; white-space: normal; }

.kv { display: grid; grid-template-columns: 1.4fr 1fr; gap: 24px; }
.kv-form { display: grid; grid-template-columns: 1fr 1.4fr auto; gap: 10px; align-items: end; }
.kv-form label { display: flex; flex-direction: column; gap: 4px; font-size: 12px; color: var(--muted); }
input {
  font: inherit;
  font-family: var(--mono);
  font-size: 13px;
  padding: 7px 9px;
  border: 1px solid #cfd6e1;
  border-radius: 6px;
  color: var(--ink);
  background: #ffffff;
}
input:focus { outline: 2px solid rgba(47, 111, 237, 0.35); border-color: var(--accent); }
.buttons { display: flex; gap: 6px; }
button {
  font: inherit;
  font-weight: 600;
  padding: 7px 14px;
  border-radius: 6px;
  border: 1px solid #cfd6e1;
  background: #ffffff;
  color: var(--ink);
  cursor: pointer;
}
button:hover { background: #f3f5f9; }
button.primary { background: var(--accent); border-color: var(--accent); color: #ffffff; }
button.primary:hover { background: #2559c7; }
button.danger { color: var(--bad); }
button:disabled { opacity: 0.6; cursor: progress; }
.result {
  grid-column: 1 / -1;
  min-height: 42px;
  padding: 10px 12px;
  border-radius: 6px;
  background: #f6f8fb;
  border: 1px solid var(--line);
  color: var(--muted);
  overflow-wrap: anywhere;
}
.result[data-state="ok"] { background: var(--leader-bg); border-color: #bfe6d3; color: var(--ink); }
.result[data-state="missing"] { background: var(--warn-bg); border-color: #f3d6ad; color: var(--ink); }
.result[data-state="error"] { background: var(--bad-bg); border-color: #f3c2bf; color: var(--bad); }
.result .value { font-family: var(--mono); font-weight: 600; }
.history ol { list-style: none; margin: 0; padding: 0; font-size: 13px; }
.history li {
  display: grid;
  grid-template-columns: 64px 52px 1fr auto;
  gap: 8px;
  padding: 3px 0;
  border-bottom: 1px dashed var(--line);
}
.history li.empty { display: block; color: var(--muted); border: none; }
.history .time { color: var(--muted); font-family: var(--mono); font-size: 12px; }
.history .op { font-weight: 600; }
.history .key { font-family: var(--mono); overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.history .outcome.ok { color: var(--leader); }
.history .outcome.bad { color: var(--bad); }
`;
