// What the gateway's tests start: the WeChat API sandbox (`wxnotify sandbox`), a redis-server of
// their own on a free port, and gateway processes. Everything listens on 127.0.0.1 and is
// killed when the test ends.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wxnotify = process.env.WXNOTIFY_BIN ?? join(root, '../../target/debug/wxnotify');

/** Starts `command`, returns it and its first line of output (within `ms`). */
async function firstLine(command, args, options, ms = 30_000) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], ...options });
  const lines = createInterface({ input: child.stdout });
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  const [line] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => {
      throw new Error(`${command} ${args.join(' ')} exited with ${code} before printing`);
    }),
  ]);
  clearTimeout(timer);
  return { child, line, lines };
}

/** A free TCP port on 127.0.0.1. */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Everything a test started, stopped together. */
export class Processes {
  #children = [];

  track(child) {
    this.#children.push(child);
    return child;
  }

  stopAll() {
    for (const child of this.#children) child.kill('SIGKILL');
  }

  /** The sandbox: `{ baseUrl, miniAppid, miniSecret, oaAppid, oaSecret, admin(method, path, body) }`. */
  async sandbox() {
    const { child, line } = await firstLine(wxnotify, ['--json', 'sandbox', '--bind', '127.0.0.1:0']);
    this.track(child);
    const info = JSON.parse(line);
    const admin = async (method, path, body) => {
      const response = await fetch(`${info.base_url}/sandbox${path}`, {
        method,
        headers: body ? { 'content-type': 'application/json' } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`sandbox ${method} ${path}: ${response.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };
    return {
      baseUrl: info.base_url,
      miniAppid: info.mini_appid,
      miniSecret: info.mini_secret,
      oaAppid: info.oa_appid,
      oaSecret: info.oa_secret,
      admin,
    };
  }

  /** A redis-server of the test's own; returns its URL. */
  async redis() {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    this.track(child);
    const lines = createInterface({ input: child.stdout });
    for await (const line of lines) {
      if (line.includes('Ready to accept connections')) break;
    }
    lines.close();
    child.stdout.resume();
    return `redis://127.0.0.1:${port}`;
  }

  /** A gateway process with `env` added; returns its base URL. */
  async gateway(env) {
    // Only the test's own settings: none inherited from the shell running the tests.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith('WXNOTIFY_')),
    );
    const { child, line, lines } = await firstLine(process.execPath, [join(root, 'src/server.js')], {
      env: { ...inherited, WXNOTIFY_BIND: '127.0.0.1:0', ...env },
    });
    this.track(child);
    lines.on('line', () => {});
    const match = /^listening on (http:\/\/\S+)$/.exec(line);
    if (!match) throw new Error(`unexpected first line from the gateway: ${line}`);
    return match[1];
  }
}

/** The gateway's environment for `sandbox`, one tenant's keys in `redisUrl`. */
export function gatewayEnv(sandbox, redisUrl, tenant, extra = {}) {
  return {
    WXNOTIFY_REDIS_URL: redisUrl,
    WXNOTIFY_TENANT: tenant,
    WXNOTIFY_API_BASE: sandbox.baseUrl,
    WXNOTIFY_MINI_APPID: sandbox.miniAppid,
    WXNOTIFY_MINI_SECRET: sandbox.miniSecret,
    WXNOTIFY_OA_APPID: sandbox.oaAppid,
    WXNOTIFY_OA_SECRET: sandbox.oaSecret,
    ...extra,
  };
}

/** `POST {base}{path}` with a JSON body; returns `{ status, body }`. */
export async function postJson(base, path, body) {
  const response = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}
