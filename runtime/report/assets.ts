// The page's inline CSS and its one small script (no library): point tooltips, click-to-row,
// the trials filter, and — only when `serve` set data-live-* on <body> — live updates over
// Server-Sent Events that swap <main> for freshly rendered content, keeping what the reader had open.

export const CSS = `
:root { --fg:#1d1d1f; --muted:#5f6368; --line:#dcdcdc; --bg:#fff; --soft:#f5f6f8; --accent:#0b5cad; --warn:#b3261e; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
main { max-width:1240px; margin:0 auto; padding:20px 28px 60px; }
header h1 { margin:0 0 2px; font-size:26px; font-weight:650; }
header .name { color:var(--accent); }
.dir { margin:0 0 16px; color:var(--muted); font:13px ui-monospace,SFMono-Regular,Menlo,monospace; word-break:break-all; }
h2 { font-size:19px; margin:34px 0 8px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:16px; margin:18px 0 6px; }
.when { margin:-8px 0 16px; color:var(--muted); font-size:13.5px; }
ul.time-lines { padding-left:18px; }
.note { color:var(--muted); font-size:13.5px; margin:4px 0 10px; max-width:95ch; }
.sub { color:var(--muted); font-size:12.5px; font-weight:400; }
.warn { color:var(--warn); font-weight:600; }
.cards { display:grid; grid-template-columns:repeat(auto-fill,minmax(118px,1fr)); gap:8px; }
.card { background:var(--soft); border-radius:8px; padding:10px 12px; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:19px; font-weight:600; font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
figure.chart { margin:0; overflow-x:auto; }
figure.chart svg { max-width:100%; height:auto; display:block; }
figure.chart path[aria-roledescription="point"] { cursor:pointer; }
table.grid { border-collapse:collapse; width:100%; font-size:13.5px; }
table.grid th, table.grid td { border-bottom:1px solid var(--line); padding:6px 8px; text-align:left; vertical-align:top; }
table.grid th { background:var(--soft); font-weight:600; white-space:nowrap; position:sticky; top:0; z-index:1; }
table.grid td { unicode-bidi:isolate; overflow-wrap:break-word; }
table.inventory td:nth-child(3) { min-width:170px; }
table.inventory th { white-space:normal; }
table.inventory td:first-child { min-width:9.5em; }
table.inventory td:nth-child(2), table.trials td:nth-child(2), table.level15 td:nth-child(2) { white-space:nowrap; }
table.groups td:nth-child(7) { min-width:240px; }
td.num { font-variant-numeric:tabular-nums; white-space:nowrap; }
.scroll-x { overflow-x:auto; }
table.groups th { white-space:normal; min-width:70px; }
div.cmp + div.cmp { margin-top:6px; }
.scroll { max-height:620px; overflow:auto; border:1px solid var(--line); border-radius:6px; }
.scroll table.grid { border:0; }
table.trials td:nth-child(5), table.trials td:nth-child(6) { min-width:220px; }
.o-kept { color:var(--accent); font-weight:600; white-space:nowrap; }
.o-failed { color:var(--warn); white-space:nowrap; }
.o-discarded, .o-baseline { white-space:nowrap; }
tr.flash td { background:#fff4c2; transition:background 1.2s; }
ul.hooks { margin:0; padding:0; list-style:none; }
ul.hooks li { padding-left:1em; text-indent:-1em; }
table.inventory td:nth-child(5) { min-width:260px; }
.status.s-active { color:var(--accent); font-weight:600; }
.status.s-quarantined, .status.s-rejected { color:var(--warn); font-weight:600; }
.mech { border-left:3px solid var(--line); padding:0 0 2px 12px; margin:10px 0; }
.mech h3 { margin:0 0 2px; }
details > summary { cursor:pointer; color:var(--accent); }
details.long > summary { color:inherit; list-style:none; }
details.long > summary::after { content:" more"; color:var(--accent); font-size:12px; }
details.long[open] > summary { display:none; }
pre { white-space:pre-wrap; overflow-wrap:anywhere; }
pre.code, pre.msg { background:var(--soft); border:1px solid var(--line); border-radius:6px; padding:10px; font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace; max-height:480px; overflow:auto; }
.role { font-size:12px; color:var(--muted); text-transform:uppercase; margin-top:8px; }
details.exchange { margin:6px 0 6px 12px; }
.filter { margin:6px 0; font-size:13.5px; }
.bars { display:flex; height:30px; border-radius:6px; overflow:hidden; border:1px solid var(--line); font-size:12.5px; }
.bar { display:flex; align-items:center; padding:0 8px; white-space:nowrap; overflow:hidden; }
.bar.train { background:#cfe0f5; } .bar.llm { background:repeating-linear-gradient(45deg,#f6dcc6,#f6dcc6 6px,#fbeee2 6px,#fbeee2 12px); } .bar.over { background:#e6e6e6; } .bar.wait { background:#f3e3a6; }
.tip { position:fixed; pointer-events:none; background:#222; color:#fff; padding:5px 8px; border-radius:4px; font-size:12.5px; max-width:520px; z-index:10; }
.live { position:fixed; top:10px; right:14px; background:#e8f3e8; color:#1e5b1e; border:1px solid #b8d8b8; border-radius:14px; padding:3px 12px; font-size:12.5px; z-index:5; }
.live.off { background:#f8e5e3; color:var(--warn); border-color:#e8b9b4; }
.badge { display:inline-block; border:1px solid var(--line); border-radius:10px; padding:0 8px; font-size:12px; }
@media (max-width: 800px) { main { padding:12px; } }
`;

export const SCRIPT = `
(() => {
  "use strict";
  const tip = document.getElementById("tip");
  const POINT = 'figure.chart path[aria-roledescription="point"]';
  document.addEventListener("mousemove", (ev) => {
    const el = ev.target instanceof Element ? ev.target.closest(POINT) : null;
    const label = el ? el.getAttribute("aria-label") : null;
    if (!label) { tip.hidden = true; return; }
    tip.textContent = label;
    tip.hidden = false;
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = x + "px";
    tip.style.top = (ev.clientY + 16) + "px";
  });
  document.addEventListener("click", (ev) => {
    const el = ev.target instanceof Element ? ev.target.closest(POINT) : null;
    const m = el ? /trial #(\\d+)/.exec(el.getAttribute("aria-label") || "") : null;
    const row = m ? document.getElementById("t-" + m[1]) : null;
    if (!row) return;
    const filter = document.getElementById("trial-filter");
    if (filter && filter.value !== "all") { filter.value = "all"; applyFilter(); }
    row.scrollIntoView({ block: "center" });
    row.classList.add("flash");
    setTimeout(() => row.classList.remove("flash"), 1500);
  });
  function applyFilter() {
    const filter = document.getElementById("trial-filter");
    if (!filter) return;
    const v = filter.value;
    for (const row of document.querySelectorAll("table.trials tbody tr")) {
      const show = v === "all" || (v === "touched" ? row.dataset.touched === "1" : row.dataset.outcome === v);
      row.hidden = !show;
    }
  }
  document.addEventListener("change", (ev) => {
    if (ev.target instanceof Element && ev.target.id === "trial-filter") applyFilter();
  });

  const events = document.body.dataset.liveEvents;
  const source = document.body.dataset.liveContent;
  if (!events || !source || typeof EventSource === "undefined") return;
  const badge = document.getElementById("live");
  let revision = document.body.dataset.liveRevision || "";
  let busy = false, again = false;
  const say = (text, off) => { badge.hidden = false; badge.textContent = text; badge.classList.toggle("off", !!off); };
  say("live");
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const res = await fetch(source, { cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      const html = await res.text();
      const main = document.getElementById("content");
      const open = [...main.querySelectorAll("details[open][id]")].map((d) => d.id);
      const filter = document.getElementById("trial-filter");
      const filterValue = filter ? filter.value : "all";
      const scroll = document.querySelector(".scroll");
      const scrollTop = scroll ? scroll.scrollTop : 0;
      main.innerHTML = html;
      for (const id of open) { const d = document.getElementById(id); if (d) d.open = true; }
      const f = document.getElementById("trial-filter");
      if (f) { f.value = filterValue; applyFilter(); }
      const s = document.querySelector(".scroll");
      if (s) s.scrollTop = scrollTop;
      say("live · updated " + new Date().toLocaleTimeString());
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    } catch (err) {
      say("live · update failed: " + err.message, true);
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  const es = new EventSource(events);
  es.addEventListener("revision", (ev) => {
    if (ev.data === revision) { say("live"); return; }
    revision = ev.data;
    refresh();
  });
  es.addEventListener("error", () => say("live · disconnected, retrying", true));
})();
`;
