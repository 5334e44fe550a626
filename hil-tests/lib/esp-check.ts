/**
 * systemd-boot's counting against larch's view, after every boot of a systemd-boot board (issue
 * 19, must-show 2). The entries on the ESP are what systemd-boot counts in (it renames
 * `larch-b+2.conf` to `larch-b+1-1.conf` as it boots it); `larch status --json` is what larch
 * read from them. This parser is the harness's own, written from systemd-boot(7)'s naming
 * rule, not larch's (src/bootcount/bls.ts), so the two readings are independent. Pure.
 */

export interface EspEntry {
  file: string;
  /** Tries left (null: no counter, a good entry) and tries done (0 when the name has none). */
  left: number | null;
  done: number;
  version: string | null;
}

export interface EspView {
  slots: Partial<Record<'A' | 'B', EspEntry>>;
  /** The slot the rescue entry boots (larch's last known good). */
  rescue: 'A' | 'B' | null;
  /** Slots larch parked below the release floor (loader/larch.env BOOT_X_PARKED): named +0 while larch keeps their state. */
  parked: ('A' | 'B')[];
  problems: string[];
}

const ENTRY = /^larch-([ab])(?:\+(\d+)(?:-(\d+))?)?\.conf$/;

/**
 * Parses what the board prints for ESP_LISTING: one `FILE<TAB>version N` line per larch entry
 * (`FILE<TAB>` with no version line), `rescue<TAB>larch.slot=X` and `parked<TAB>BOOT_X_PARKED=...`.
 */
export function parseEspListing(text: string): EspView {
  const view: EspView = { slots: {}, rescue: null, parked: [], problems: [] };
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [key, value = ''] = line.split('\t');
    if (key === 'rescue') {
      const m = /larch\.slot=([AB])\b/.exec(value);
      if (m) view.rescue = m[1] as 'A' | 'B';
      else view.problems.push(`the rescue entry names no slot: ${value}`);
    } else if (key === 'parked') {
      const m = /^BOOT_([AB])_PARKED=/.exec(value);
      if (m) view.parked.push(m[1] as 'A' | 'B');
    } else if (key === 'larch-rescue.conf') {
      // listed with the others; its slot comes from its own line
    } else {
      const m = ENTRY.exec(key);
      if (!m) {
        view.problems.push(`an entry larch does not write: ${key}`);
        continue;
      }
      const slot = m[1].toUpperCase() as 'A' | 'B';
      if (view.slots[slot]) view.problems.push(`two entries for slot ${slot}: ${view.slots[slot]!.file}, ${key}`);
      const version = /^version\s+(\S+)/.exec(value)?.[1] ?? null;
      view.slots[slot] = { file: key, left: m[2] === undefined ? null : Number(m[2]), done: m[3] === undefined ? 0 : Number(m[3]), version };
    }
  }
  return view;
}

/** The shell command that prints the listing parseEspListing reads, for an ESP mounted at `esp`. */
export function espListingCommand(esp: string): string {
  const dir = `${esp}/loader/entries`;
  return [
    `for f in ${dir}/larch-*.conf; do [ -e "$f" ] || continue; printf '%s\\t%s\\n' "\${f##*/}" "$(busybox grep -m1 '^version' "$f")"; done`,
    `[ -e ${dir}/larch-rescue.conf ] && printf 'rescue\\t%s\\n' "$(busybox grep -m1 '^options' ${dir}/larch-rescue.conf)"`,
    `[ -e ${esp}/loader/larch.env ] && busybox grep -a -o 'BOOT_[AB]_PARKED=[a-z0-9:]*' ${esp}/loader/larch.env | busybox sed 's/^/parked\\t/'`,
    'true',
  ].join('; ');
}

/** What `larch status --json` says in `boot`. */
export interface StatusBoot {
  order: string[];
  last_good: string;
  rescue: boolean;
  slots: Record<string, { good: boolean; tries_left: number; deployed?: boolean }>;
}

/** The differences between systemd-boot's entries and larch's status (empty: they agree). */
export function compareEspWithStatus(esp: EspView, boot: StatusBoot): string[] {
  const problems = [...esp.problems];
  for (const slot of ['A', 'B'] as const) {
    const entry = esp.slots[slot];
    const seen = boot.slots[slot];
    if (!seen) {
      problems.push(`status has no slot ${slot}`);
      continue;
    }
    if (esp.parked.includes(slot)) continue; // named +0 on purpose; larch keeps its state in larch.env
    // No entry, or +0: not bootable. No counter: good. +L: unconfirmed with L tries.
    const good = entry !== undefined && entry.left === null;
    const left = entry === undefined || entry.left === null ? 0 : entry.left;
    if (seen.good !== good || seen.tries_left !== left) {
      problems.push(`slot ${slot}: the ESP has ${entry?.file ?? 'no entry'} (${good ? 'good' : `${left} tries left`}), larch status says ${seen.good ? 'good' : `not good, ${seen.tries_left} tries left`}`);
    }
  }
  const a = esp.slots.A?.version;
  const b = esp.slots.B?.version;
  if (a != null && b != null && !esp.parked.length) {
    const first = Number(a) > Number(b) ? 'A' : 'B';
    if (boot.order[0] !== first) problems.push(`the ESP's versions (A ${a}, B ${b}) put ${first} first, larch status's order is ${boot.order.join(' ')}`);
  }
  if (esp.rescue === null) problems.push('no rescue entry on the ESP');
  else if (boot.last_good !== esp.rescue) problems.push(`the rescue entry boots ${esp.rescue}, larch status's last_good is ${boot.last_good}`);
  return problems;
}
