"""The CSS and JS inlined into every page ``rlagent.viewer`` writes (kept apart from the
Python that builds the markup; no external assets, nothing fetched)."""

PAGE_CSS = """
:root { --fg:#1d2329; --muted:#66717c; --line:#dde2e7; --bg:#f7f8fa; --pos:#17803d; --err:#b42318; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; padding: 12px 20px 40px; }
header h1 { font-size: 18px; margin: 0; } .sub { color: var(--muted); margin: 2px 0 8px; }
.top { display: flex; flex-wrap: wrap; gap: 16px; align-items: center; }
.controls { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.controls select, .controls input, .controls button { font: inherit; padding: 3px 6px; }
.spark svg { vertical-align: middle; background: #fff; border: 1px solid var(--line); }
.spark polyline { fill: none; stroke: #4a6fa5; stroke-width: 1.5; }
.spark circle { fill: #4a6fa5; cursor: pointer; } .spark circle.cur { fill: #e8590c; r: 5; }
.spark small { color: var(--muted); margin-left: 6px; }
.legend { color: var(--muted); font-size: 12px; }
.metrics { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 10px 0 4px; }
.metrics b { font-weight: 500; color: var(--muted); }
.note { background: #fff8e1; border: 1px solid #f1d48a; padding: 4px 8px; border-radius: 4px; }
.count { color: var(--muted); margin: 6px 0; }
details.ep { background: #fff; border: 1px solid var(--line); border-radius: 6px; margin: 4px 0; }
details.ep > summary { cursor: pointer; padding: 5px 8px; display: flex; gap: 8px;
                       align-items: baseline; flex-wrap: wrap; }
.r { font: 600 13px ui-monospace, monospace; min-width: 4.5em; text-align: right; }
.r.pos { color: var(--pos); } .r.zero { color: var(--muted); } .r.none { color: var(--err); }
.tid { font-family: ui-monospace, monospace; font-size: 12px; }
.chip { font-size: 11px; background: #eef1f4; border-radius: 9px; padding: 0 7px; }
.chip.err { background: #fde8e6; color: var(--err); }
.meta { color: var(--muted); font-size: 12px; }
.last { color: var(--muted); font: 12px ui-monospace, monospace; flex-basis: 100%;
        padding-left: 5em; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.body { padding: 0 12px 10px; border-top: 1px solid var(--line); }
.body h4 { margin: 12px 0 4px; font-size: 13px; } .body h4 small { color: var(--muted); font-weight: 400; }
dl.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 10px;
           font-size: 12px; margin: 8px 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; font-family: ui-monospace, monospace; }
table.rewards { border-collapse: collapse; font-size: 12px; }
table.rewards th, table.rewards td { border: 1px solid var(--line); padding: 2px 8px; text-align: left; }
td.lat { color: var(--muted); } .err { color: var(--err); }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font: 12px/1.4 ui-monospace, monospace; }
.msg { display: grid; grid-template-columns: 6.5em 1fr; gap: 6px; padding: 3px 0; }
.role { color: var(--muted); font-size: 12px; } .act pre { background: #eef6ee; padding: 2px 4px; }
.turn { border-left: 3px solid var(--line); padding-left: 8px; margin: 6px 0; }
.th { font-size: 12px; font-weight: 600; } .info { color: var(--muted); font: 11px ui-monospace, monospace; }
.toks { font: 12px/1.9 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all;
        background: #fff; border: 1px solid var(--line); padding: 6px; max-height: 420px; overflow: auto; }
.toks i, .toks b, .legend i, .legend b { font-style: normal; font-weight: 400; padding: 1px 0;
        border-right: 1px solid rgba(0,0,0,.08); }
.toks i, .legend i { color: #8a949e; }
.s0 { background: #d8f3dc; } .s1 { background: #b7e4c7; } .s2 { background: #ffe8a3; }
.s3 { background: #ffc078; } .s4 { background: #ff8a80; }
"""

# Step switching, filters and sort act on the server-rendered rows; an episode's details are
# parsed from its inert template only when it is first opened (big runs stay fast).
PAGE_JS = """
(() => {
  const $ = (s, el = document) => el.querySelector(s);
  const stepSel = $('#step'), taskIn = $('#task'), rfilter = $('#rfilter'), sortSel = $('#sort');
  if (!stepSel || !stepSel.options.length) return;
  const reward = r => r.dataset.reward === '' ? null : Number(r.dataset.reward);
  const keep = {
    all: () => true,
    pos: r => reward(r) !== null && reward(r) > 0,
    zero: r => reward(r) !== null && reward(r) <= 0,
    none: r => reward(r) === null || r.dataset.errors === '1',
  };
  const order = {
    order: (a, b) => a.dataset.i - b.dataset.i,
    desc: (a, b) => (reward(b) ?? -Infinity) - (reward(a) ?? -Infinity) || a.dataset.i - b.dataset.i,
    asc: (a, b) => (reward(a) ?? Infinity) - (reward(b) ?? Infinity) || a.dataset.i - b.dataset.i,
    task: (a, b) => a.dataset.task.localeCompare(b.dataset.task) || a.dataset.i - b.dataset.i,
  };
  function apply() {
    const step = stepSel.value;
    for (const s of document.querySelectorAll('section.step')) s.hidden = s.dataset.step !== step;
    for (const c of document.querySelectorAll('.spark circle'))
      c.classList.toggle('cur', c.dataset.step === step);
    try { history.replaceState(null, '', '#step-' + step); } catch (err) { /* some file: pages */ }
    const sec = $('section.step[data-step="' + step + '"]'), list = sec && $('.eps', sec);
    if (!list) return;
    const q = taskIn.value.trim().toLowerCase(), ok = keep[rfilter.value];
    const rows = [...list.children];
    let shown = 0;
    for (const r of rows) {
      r.hidden = !(ok(r) && (!q || r.dataset.task.toLowerCase().includes(q)));
      shown += !r.hidden;
    }
    rows.sort(order[sortSel.value]).forEach(r => list.appendChild(r));
    $('.count', sec).textContent = shown + ' of ' + rows.length + ' episodes shown';
  }
  function go(delta) {
    stepSel.selectedIndex = Math.min(Math.max(stepSel.selectedIndex + delta, 0), stepSel.options.length - 1);
    apply();
  }
  document.addEventListener('toggle', e => {
    const body = e.target.open && $('.body', e.target);
    if (body && !body.dataset.done) {
      body.innerHTML = document.getElementById(body.dataset.src).textContent;  // escaped markup
      body.dataset.done = '1';
    }
  }, true);
  $('#prev').onclick = () => go(-1);
  $('#next').onclick = () => go(1);
  for (const el of [stepSel, rfilter, sortSel]) el.onchange = apply;
  taskIn.oninput = apply;
  for (const c of document.querySelectorAll('.spark circle'))
    c.onclick = () => { stepSel.value = c.dataset.step; apply(); };
  const wanted = location.hash.match(/^#step-(\\d+)$/);
  if (wanted && [...stepSel.options].some(o => o.value === wanted[1])) stepSel.value = wanted[1];
  else stepSel.selectedIndex = stepSel.options.length - 1;
  apply();
})();
"""
