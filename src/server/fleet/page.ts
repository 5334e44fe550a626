/**
 * The fleet page (`/fleet/` on `larch serve --dashboard`): one static HTML page, a stylesheet and
 * a small script, kept here as strings so the single Bun binary carries them with no build step
 * and no framework. The script polls `/api/fleet/rollouts` and `/api/fleet/devices` every 5 s and
 * draws: per ref the release in flight, its rollout, plan and halt (a banner), a chart of its
 * progress over time (progress.jsonl samples), its counts, a stacked bar per version (booted
 * good, trying, staged, downloading, fell back, failed), fallbacks by failed health check, and
 * the device table (last status and how long ago, last error, last three journal lines). Every
 * device-supplied string is set with textContent, never parsed as HTML.
 * The layout wraps to one column on a phone.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>larch fleet</title>
<link rel="stylesheet" href="fleet.css">
</head>
<body>
<header><h1>larch fleet</h1><p id="status">loading…</p></header>
<main>
<section id="rollouts" aria-label="rollouts"></section>
<section aria-label="devices">
<h2>Devices <span id="device-count"></span></h2>
<p><label>state <select id="state-filter"><option value="">all</option></select></label>
<label>id <input id="id-filter" size="12" placeholder="prefix"></label></p>
<div class="scroll"><table id="devices"><thead><tr><th>device</th><th>online</th><th>version</th><th>state</th><th>last status</th><th>last error</th><th>last journal lines</th></tr></thead><tbody></tbody></table></div>
</section>
</main>
<script src="fleet.js"></script>
</body>
</html>
`;

export const PAGE_CSS = `body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1c2230;background:#f6f7f9}
header{background:#24402f;color:#fff;padding:.6em 1em}header h1{margin:0;font-size:1.3em}header p{margin:.2em 0 0}
main{padding:.5em 1em;max-width:72em}
.ref{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:.6em .9em;margin:.8em 0}
.ref h2{margin:.1em 0 .4em;font-size:1.1em}
.counts{display:flex;flex-wrap:wrap;gap:.4em 1.2em;margin:.3em 0}.counts span b{font-variant-numeric:tabular-nums}
.version{display:flex;align-items:center;gap:.6em;margin:.3em 0;flex-wrap:wrap}.version .label{min-width:7em}
.bar{display:flex;flex:1 1 16em;height:1.1em;border-radius:3px;overflow:hidden;background:#e8eaee;min-width:10em}
.bar i{display:block;height:100%}
.booted_good{background:#2e8b57}.booted_unconfirmed{background:#8fbc8f}.rescue{background:#6a5acd}.staged{background:#4682b4}.downloading{background:#9ec5e6}.fell_back{background:#e08a1e}.failed{background:#c0392b}
.legend{display:flex;flex-wrap:wrap;gap:.3em .9em;font-size:.85em}.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;border-radius:2px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #e3e6ea;white-space:nowrap}
td.msg{white-space:normal;min-width:14em}
.halt{background:#fdecea;border-left:4px solid #c0392b;padding:.4em .6em;margin:.4em 0;font-weight:600}.rule,.plan{margin:.2em 0;font-size:.9em}
figure.progress{margin:.4em 0}.chart{width:100%;height:7.5em;background:#fafbfc;border:1px solid #e3e6ea}.chart polyline{fill:none;stroke-width:2}
.chart .rollout{stroke:#555;stroke-dasharray:4 3}.chart .took{stroke:#4682b4}.chart .good{stroke:#2e8b57}.chart .bad{stroke:#c0392b}
.l-rollout{background:#555}.l-took{background:#4682b4}.l-good{background:#2e8b57}.l-bad{background:#c0392b}
@media (max-width:600px){main{padding:.3em .5em}.version .label{min-width:100%}}
`;

export const PAGE_JS = String.raw`'use strict';
const SEGMENTS = [['booted_good', 'booted good'], ['booted_unconfirmed', 'trying'], ['rescue', 'rescue'], ['staged', 'staged'], ['downloading', 'downloading'], ['fell_back', 'fell back'], ['failed', 'failed']];
const STATES = ['booted-good', 'booted-unconfirmed', 'downloading', 'staged', 'fell-back', 'failed', 'rescue', 'unknown'];
const el = (tag, attrs, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const api = (path) => fetch(path, { cache: 'no-cache' }).then((r) => { if (!r.ok) throw new Error(path + ': HTTP ' + r.status); return r.json(); });
const filter = document.getElementById('state-filter');
for (const s of STATES) filter.append(el('option', { value: s }, s));

function drawRollouts(rollouts) {
  const box = document.getElementById('rollouts');
  box.replaceChildren();
  for (const r of rollouts) {
    const sec = el('div', { class: 'ref', 'data-ref': r.ref });
    sec.append(el('h2', {}, r.ref, r.release ? ' — ' + r.release.version + ' at ' + r.rollout + '%' : ' — nothing announced'));
    if (r.halted) {
      const h = r.halted;
      sec.append(el('p', { class: 'halt', role: 'alert', 'data-halted': h.version },
        'HALTED ' + new Date(h.time).toLocaleString() + ': version ' + h.version + ' stopped at ' + h.rollout + '%: ' + h.failures + ' of ' + h.decided + ' devices that decided fell back or failed (' + h.failure_pct + '%, rule: more than ' + (r.halt_rule ? r.halt_rule.failures_pct : '?') + '%). ' +
        (h.to ? 'Version ' + h.to.version + ' is announced to the devices not yet moved.' : 'No earlier release is known: announced at 0%.')));
    } else if (r.halt_rule) {
      sec.append(el('p', { class: 'rule' }, 'halts when more than ' + r.halt_rule.failures_pct + '% of at least ' + r.halt_rule.min_devices + ' devices that decided fell back or failed'));
    }
    if (r.plan) sec.append(el('p', { class: 'plan' }, 'plan: ' + r.plan.start + '% to 100% over ' + r.plan.over_s + ' s in ' + r.plan.steps + ' steps' + (r.plan.next_step && !r.halted ? '; next ' + r.plan.next_step.rollout + '% at ' + new Date(r.plan.next_step.time).toLocaleTimeString() : '')));
    const samples = r.release ? r.progress.filter((s) => s.commit === r.release.commit) : [];
    if (samples.length > 1) sec.append(chart(samples));
    const c = r.counts;
    const counts = el('div', { class: 'counts' });
    for (const [k, label] of [['devices', 'devices'], ['online', 'online'], ['not_moved', 'not moved'], ['took', 'took it'], ['good', 'good'], ['fell_back', 'fell back'], ['failed', 'failed'], ['failure_pct', 'failure %']]) {
      counts.append(el('span', { 'data-count': k }, label + ' ', el('b', {}, c[k])));
    }
    sec.append(counts);
    for (const v of r.versions) {
      const total = SEGMENTS.reduce((n, [k]) => n + v[k], 0);
      const bar = el('div', { class: 'bar', role: 'img', 'aria-label': SEGMENTS.filter(([k]) => v[k]).map(([k, l]) => v[k] + ' ' + l).join(', ') });
      for (const [k, label] of SEGMENTS) if (v[k]) bar.append(el('i', { class: k, title: v[k] + ' ' + label, style: 'width:' + (100 * v[k] / total) + '%' }));
      const row = el('div', { class: 'version', 'data-version': v.version === null ? '' : v.version });
      for (const [k] of SEGMENTS) row.setAttribute('data-' + k.replace('_', '-'), v[k]);
      row.append(el('span', { class: 'label' }, 'version ' + (v.version === null ? v.commit.slice(0, 12) : v.version) + ' (' + total + ')'), bar);
      sec.append(row);
    }
    const legend = el('div', { class: 'legend' });
    for (const [k, label] of SEGMENTS) legend.append(el('span', {}, el('i', { class: k }), label));
    sec.append(legend);
    if (r.fallbacks_by_check.length) {
      const t = el('table', { class: 'fallbacks' }, el('thead', {}, el('tr', {}, el('th', {}, 'fell back on'), el('th', {}, 'version'), el('th', {}, 'devices'))));
      const body = el('tbody');
      for (const f of r.fallbacks_by_check) body.append(el('tr', { 'data-check': f.check }, el('td', {}, f.check), el('td', {}, f.version === null ? '' : f.version), el('td', {}, f.devices)));
      t.append(body);
      sec.append(t);
    }
    box.append(sec);
  }
}

/** The rollout and the devices that took the release, booted it good or fell back/failed, over time: an SVG, with the same numbers as text in its title. */
function chart(samples) {
  const NS = 'http://www.w3.org/2000/svg';
  const W = 600, H = 120;
  const t0 = Date.parse(samples[0].time), t1 = Math.max(Date.parse(samples[samples.length - 1].time), t0 + 1);
  const most = Math.max(1, ...samples.map((s) => s.took));
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
  svg.setAttribute('class', 'chart');
  svg.setAttribute('role', 'img');
  const last = samples[samples.length - 1];
  const title = document.createElementNS(NS, 'title');
  title.textContent = 'progress: rollout ' + last.rollout + '%, took ' + last.took + ', good ' + last.good + ', fell back or failed ' + (last.fell_back + last.failed) + ' (' + samples.length + ' samples)';
  svg.append(title);
  const line = (cls, value, max) => {
    const p = document.createElementNS(NS, 'polyline');
    p.setAttribute('class', cls);
    p.setAttribute('points', samples.map((s) => ((Date.parse(s.time) - t0) / (t1 - t0) * (W - 4) + 2).toFixed(1) + ',' + (H - 2 - value(s) / max * (H - 4)).toFixed(1)).join(' '));
    svg.append(p);
  };
  line('rollout', (s) => s.rollout, 100);
  line('took', (s) => s.took, most);
  line('good', (s) => s.good, most);
  line('bad', (s) => s.fell_back + s.failed, most);
  const legend = el('div', { class: 'legend' }, el('span', {}, el('i', { class: 'l-rollout' }), 'rollout %'), el('span', {}, el('i', { class: 'l-took' }), 'took it'), el('span', {}, el('i', { class: 'l-good' }), 'good'), el('span', {}, el('i', { class: 'l-bad' }), 'fell back or failed'));
  return el('figure', { class: 'progress' }, svg, legend);
}

/** "12 s ago", "5 min ago", "3 h ago", "2 d ago" (the device's clock against this browser's). */
function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return '(' + (s < 120 ? s + ' s' : s < 7200 ? Math.round(s / 60) + ' min' : s < 172800 ? Math.round(s / 3600) + ' h' : Math.round(s / 86400) + ' d') + ' ago)';
}

function drawDevices(devices) {
  const body = document.querySelector('#devices tbody');
  body.replaceChildren();
  for (const d of devices) {
    const lines = d.journal.slice(-3).map((j) => el('div', {}, j.event + ': ' + j.message));
    const status = d.last_status ? el('time', { datetime: d.last_status, title: d.last_status }, (d.update_state || '') + ' ' + ago(d.last_status)) : '';
    body.append(el('tr', { 'data-device': d.device_id, 'data-state': d.state },
      el('td', {}, d.device_id), el('td', {}, d.online ? 'yes' : 'no'), el('td', {}, d.version === null ? '' : d.version), el('td', {}, d.state),
      el('td', {}, status),
      el('td', { class: 'msg' }, d.last_error ? d.last_error.code + ': ' + d.last_error.message : ''),
      el('td', { class: 'msg' }, ...lines)));
  }
  document.getElementById('device-count').textContent = '(' + devices.length + ')';
}

async function refresh() {
  const q = new URLSearchParams();
  if (filter.value) q.set('state', filter.value);
  const id = document.getElementById('id-filter').value.trim();
  if (id) q.set('q', id);
  try {
    const [rollouts, devices] = await Promise.all([api('/api/fleet/rollouts'), api('/api/fleet/devices?' + q)]);
    drawRollouts(rollouts);
    drawDevices(devices);
    const synced = rollouts.length === 0 || rollouts[0].synced;
    document.getElementById('status').textContent = (synced ? 'up to date' : 'reading the broker…') + ', ' + new Date().toLocaleTimeString();
    document.body.setAttribute('data-ready', synced ? 'synced' : 'syncing');
  } catch (err) {
    document.getElementById('status').textContent = 'cannot read the fleet view: ' + err.message;
  }
}
filter.addEventListener('change', refresh);
document.getElementById('id-filter').addEventListener('input', refresh);
refresh();
setInterval(refresh, 5000);
`;

/** The page's files by path under /fleet/. */
export const PAGE_FILES: Record<string, { type: string; body: string }> = {
  '/fleet/': { type: 'text/html; charset=utf-8', body: PAGE_HTML },
  '/fleet/fleet.css': { type: 'text/css; charset=utf-8', body: PAGE_CSS },
  '/fleet/fleet.js': { type: 'text/javascript; charset=utf-8', body: PAGE_JS },
};
