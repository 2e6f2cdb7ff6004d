// The browser tests' fixtures: the real hub binary (serve, mock-llm, token create, demo) on
// loopback port 0, a plain static server standing in for a customer's site or a recording host,
// and Debian's headless Chromium driven by playwright-core. Nothing here mocks a request inside
// the page: every request a page makes reaches a real server.

import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname, resolve, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '..', '..');

/** The hub binary: $SWITCHBOARD_BIN, else the debug build `cargo test` left behind. */
export function binary() {
  const bin = process.env.SWITCHBOARD_BIN || join(process.env.CARGO_TARGET_DIR || join(ROOT, 'target'), 'debug', 'switchboard');
  if (!existsSync(bin)) throw new Error(`no hub binary at ${bin}: run \`cargo build\` first or set SWITCHBOARD_BIN`);
  return bin;
}

/** Where screenshots go; CI keeps this folder as its artifacts. */
export const ARTIFACTS = process.env.SWITCHBOARD_BROWSER_ARTIFACTS || join(ROOT, 'target', 'browser-artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

const children = new Set();
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ } });

/**
 * Starts a child process and resolves once one of its (JSON) log lines satisfies `ready`,
 * with that line. Its output is kept for failure messages.
 */
function startProcess(args, { env = {}, ready, what, timeoutMs = 30000 }) {
  const child = spawn(binary(), args, { env: { ...process.env, SWITCHBOARD_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const log = [];
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in ${timeoutMs} ms:\n${log.join('\n')}`)), timeoutMs);
    let buffered = '';
    const onData = (chunk) => {
      buffered += chunk.toString('utf8');
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        log.push(line);
        if (log.length > 400) log.shift();
        let parsed = null;
        try { parsed = JSON.parse(line); } catch { parsed = { text: line }; }
        const got = ready(parsed);
        if (got) { clearTimeout(timer); resolveStart({ child, line: got, log }); }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code}:\n${log.join('\n')}`)); });
  });
}

async function stopProcess(child) {
  if (!child || child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

/** `switchboard mock-llm` on a free port: `{ url, baseUrl, stop }` (baseUrl ends in /v1). */
export async function startMockLlm(extraArgs = []) {
  const { child, line } = await startProcess(['mock-llm', '--listen', '127.0.0.1:0', ...extraArgs], {
    what: 'mock-llm',
    ready: (l) => (l.fields?.url || l.url) && /the mock model is serving/.test(l.fields?.message || l.message || '') ? (l.fields?.url || l.url) : null,
  });
  const baseUrl = String(line).replace(/\/$/, '');
  return { baseUrl, stop: () => stopProcess(child) };
}

/**
 * `switchboard serve` on a free port with a fresh SQLite database and the given TOML
 * (appended to a file that sets nothing else). Serves the web files from the working tree
 * (`web_dir`), so a test sees the page source it sits beside. Returns
 * `{ url, dir, databaseUrl, token(role), stop }`.
 */
export async function startHub({ toml = '', env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-browser-'));
  const config = join(dir, 'switchboard.toml');
  writeFileSync(config, toml);
  const databaseUrl = `sqlite://${join(dir, 'hub.db')}`;
  const { child, line } = await startProcess(['serve', '--config', config, '--listen', '127.0.0.1:0', '--database-url', databaseUrl], {
    what: 'the hub',
    env: { SWITCHBOARD_WEB_DIR: join(ROOT, 'web'), SWITCHBOARD_RECORDINGS: join(dir, 'recordings'), SWITCHBOARD_LOG: 'info', ...env },
    ready: (l) => (/switchboard is serving/.test(l.message || l.fields?.message || '') ? (l.listen || l.fields?.listen) : null),
  });
  const url = `http://${line}`;
  return {
    url,
    dir,
    databaseUrl,
    token: (role = 'supervisor', org = '*') => createToken(databaseUrl, role, org),
    stop: () => stopProcess(child),
  };
}

/**
 * `switchboard demo` on free ports, as a newcomer runs it. Resolves with what it printed:
 * `{ dashboardUrl, demoUrl, token, hubUrl, output, stop }`.
 */
export async function startDemo(args = []) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-demo-'));
  const { child, log } = await startProcess(['demo', '--listen', '127.0.0.1:0', '--site-listen', '127.0.0.1:0', '--dir', dir, ...args], {
    what: 'switchboard demo',
    env: { SWITCHBOARD_WEB_DIR: join(ROOT, 'web') },
    ready: (l) => (/^\s*Demo page:/i.test(l.text || '') ? l.text : null),
    timeoutMs: 60000,
  });
  const output = log.join('\n');
  const find = (label) => (output.match(new RegExp(`${label}:\\s*(\\S+)`, 'i')) || [])[1];
  const dashboardUrl = find('Dashboard');
  const demoUrl = find('Demo page');
  const token = new URL(dashboardUrl).hash.replace(/^#token=/, '');
  return { dashboardUrl, demoUrl, token, hubUrl: new URL(dashboardUrl).origin, output, stop: () => stopProcess(child) };
}

/** `switchboard token create` against the hub's database; the token alone. */
export async function createToken(databaseUrl, role = 'supervisor', org = '*') {
  const { stdout } = await promisify(execFile)(binary(), ['token', 'create', '--role', role, '--org', org, '--database-url', databaseUrl], {
    env: { ...process.env, SWITCHBOARD_LOG: 'warn' },
  });
  return stdout.trim();
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.wav': 'audio/wav', '.json': 'application/json' };

/**
 * A plain HTTP server on a free loopback port, standing in for a customer's website or a
 * recording host. `routes` maps a path to `{ body, type }` or to a function `(req, res)`.
 * Returns `{ url, origin, stop, hits }`.
 */
export async function startSite(routes) {
  const hits = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    hits.push(path);
    const route = routes[path];
    if (typeof route === 'function') return route(req, res);
    if (!route) { res.writeHead(404, { 'content-type': 'text/plain' }); return res.end('not found'); }
    res.writeHead(200, { 'content-type': route.type || TYPES[extname(path)] || 'application/octet-stream', 'content-length': Buffer.byteLength(route.body) });
    res.end(route.body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { url: origin, origin, hits, stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

/** A short mono 16-bit PCM WAV (a quiet tone), as a recording host would serve. */
export function toneWav(seconds = 3, rate = 8000) {
  const n = Math.floor(seconds * rate);
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8); buf.write('fmt ', 12);
  buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22); buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34); buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(3000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  return buf;
}

/** Headless Debian Chromium (no download: playwright-core drives the system browser). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  return chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
}

/** Saves a screenshot of `page` as ARTIFACTS/name.png. */
export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
}

/** Reads a file of the working tree (a web asset, for size checks). */
export function readTree(path) {
  return readFileSync(join(ROOT, path));
}

/** Posts one VAPI webhook body to the hub (unsigned: the browser tests' hubs have no secret). */
export async function postWebhook(hubUrl, message) {
  const r = await fetch(`${hubUrl}/vapi/webhook`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ message }) });
  if (!r.ok) throw new Error(`webhook ${message.type} answered ${r.status}: ${await r.text()}`);
  return r.json();
}

/**
 * A TCP proxy on a free loopback port in front of `targetUrl`, for real network blips: `cut()`
 * resets every open connection (the page sees its WebSocket and streams drop) while new
 * connections still go through. Returns `{ url, cut, stop }`.
 */
export async function startProxy(targetUrl) {
  const { createServer: createTcpServer, connect } = await import('node:net');
  const target = new URL(targetUrl);
  const open = new Set();
  const server = createTcpServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    open.add(client); open.add(upstream);
    const forget = () => { open.delete(client); open.delete(upstream); };
    client.on('close', forget); upstream.on('close', forget);
    client.on('error', () => upstream.destroy()); upstream.on('error', () => client.destroy());
    client.pipe(upstream); upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  const cut = () => { for (const s of [...open]) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy(); open.clear(); };
  return { url, cut, stop: () => new Promise((r) => { cut(); server.close(() => r()); }) };
}
