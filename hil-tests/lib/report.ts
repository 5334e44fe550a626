/** The per-scenario report `npm run hil` prints (pure formatting). */
import type { ScenarioReport } from './scenario.ts';

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

export function formatReport(reports: ScenarioReport[], extra: { totalSeconds: number; images: { board: string; seconds: number }[]; skipped: string[] }): string {
  const lines: string[] = ['', '== larch HIL report'];
  for (const i of extra.images) lines.push(`image ${i.board}: built in ${i.seconds.toFixed(0)} s`);
  for (const s of extra.skipped) lines.push(`skipped: ${s}`);
  lines.push('');
  lines.push(`${pad('board', 18)} ${pad('scenario', 7)} ${pad('result', 6)} ${pad('time', 7)} boots (power-on or reboot to boot-check)`);
  for (const r of reports) {
    const boots = r.boots.length ? `${r.boots.length} boots, ${Math.min(...r.boots.map((b) => b.seconds)).toFixed(1)}-${Math.max(...r.boots.map((b) => b.seconds)).toFixed(1)} s (mean ${(r.boots.reduce((a, b) => a + b.seconds, 0) / r.boots.length).toFixed(1)} s)` : '-';
    lines.push(`${pad(r.board, 18)} ${pad(r.id, 7)} ${pad(r.ok ? 'PASS' : 'FAIL', 6)} ${pad(`${r.seconds.toFixed(0)} s`, 7)} ${boots}`);
  }
  for (const r of reports) {
    lines.push('', `-- ${r.board} ${r.id}: ${r.name} (${r.ok ? 'PASS' : 'FAIL'}, ${r.seconds.toFixed(0)} s; console log ${r.log})`);
    for (const b of r.boots) lines.push(`   boot ${b.seconds.toFixed(1).padStart(6)} s  ${b.label}`);
    for (const n of r.notes) lines.push(`   ${n}`);
    if (r.error) lines.push(`   FAILED: ${r.error.split('\n').slice(0, 25).join('\n   ')}`);
  }
  const failed = reports.filter((r) => !r.ok).length;
  lines.push('', `${reports.length - failed} scenarios passed, ${failed} failed, in ${(extra.totalSeconds / 60).toFixed(1)} min`);
  return lines.join('\n');
}
