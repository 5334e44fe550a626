/**
 * Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe
 * (`--remote-debugging-pipe`: fd 3 in, fd 4 out, NUL-terminated JSON), no dependency: open a page,
 * wait until an expression is true, evaluate, take a screenshot.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export interface Browser {
  /** Opens url in a new tab of width × height CSS pixels. */
  open(url: string, width: number, height: number): Promise<Page>;
  close(): Promise<void>;
}

export interface Page {
  /** Evaluates a JS expression in the page, returns its JSON value. */
  evaluate<T>(expression: string): Promise<T>;
  /** Resolves once expression is truthy (polled every 100 ms), or rejects after timeoutMs. */
  waitFor(expression: string, timeoutMs?: number): Promise<void>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Buffer>;
}

export async function launchChromium(): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'larch-chromium-'));
  const child: ChildProcess = spawn('chromium', ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', '--no-default-browser-check', '--remote-debugging-pipe', `--user-data-dir=${profile}`, 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  const input = child.stdio[3] as Writable;
  const output = child.stdio[4] as Readable;
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  let buffer = Buffer.alloc(0);
  output.on('data', (d: Buffer) => {
    buffer = Buffer.concat([buffer, d]);
    for (let i = buffer.indexOf(0); i >= 0; i = buffer.indexOf(0)) {
      const msg = JSON.parse(buffer.subarray(0, i).toString('utf8'));
      buffer = buffer.subarray(i + 1);
      const p = msg.id === undefined ? undefined : pending.get(msg.id);
      if (!p) continue;
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(`${msg.error.message} (${JSON.stringify(msg.error.data ?? '')})`));
      else p.resolve(msg.result);
    }
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', (code) => {
    for (const p of pending.values()) p.reject(new Error(`chromium exited ${code}: ${stderr.slice(-2000)}`));
    pending.clear();
  });
  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      input.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  // The browser answers once it is up: a first call waits for that.
  await send('Browser.getVersion');
  return {
    async open(url, width, height) {
      const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
      const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
      await send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: width < 600 }, sessionId);
      await send('Page.enable', {}, sessionId);
      await send('Page.navigate', { url }, sessionId);
      const page: Page = {
        async evaluate(expression) {
          const r = await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId);
          if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
          return r.result.value;
        },
        async waitFor(expression, timeoutMs = 30_000) {
          const end = Date.now() + timeoutMs;
          while (!(await page.evaluate<boolean>(`Boolean(${expression})`).catch(() => false))) {
            if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${expression}`);
            await new Promise((r) => setTimeout(r, 100));
          }
        },
        async screenshot() {
          const { data } = await send('Page.captureScreenshot', { format: 'png' }, sessionId);
          return Buffer.from(data, 'base64');
        },
      };
      return page;
    },
    async close() {
      await send('Browser.close').catch(() => {});
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
