#!/usr/bin/env node
// wxnotify's WeChat component on Node.js: WeChat's callback URLs (/callback/oa, /callback/mini)
// and the component's JSON API (/v1/…) served over node:http by the component's own
// wasi:http/incoming-handler, through preview2-shim's HTTP server.
//
//   WXNOTIFY_BIND        address to listen on (default 127.0.0.1:8080; port 0 picks one)
//   WXNOTIFY_REDIS_URL   the key-value store (default redis://127.0.0.1:6379)
//   WXNOTIFY_TENANT      the prefix of this deployment's keys (default `default`)
//   WXNOTIFY_<KEY>       the component's config: WXNOTIFY_MINI_APPID, WXNOTIFY_OA_SECRET, …
//
// The first line it prints is `listening on http://HOST:PORT`.
import { HTTPServer } from '@bytecodealliance/preview2-shim/http';

let component;
try {
  component = await import('../dist/wxnotify_guest.js');
} catch (error) {
  if (error.code !== 'ERR_MODULE_NOT_FOUND') throw error;
  console.error('wxnotify: the component is not transpiled yet: run `npm run build` first');
  process.exit(2);
}

const bind = process.env.WXNOTIFY_BIND ?? '127.0.0.1:8080';
const separator = bind.lastIndexOf(':');
const host = bind.slice(0, separator);
const port = Number(bind.slice(separator + 1));
if (separator < 0 || !host || !Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`wxnotify: WXNOTIFY_BIND must be HOST:PORT, got ${JSON.stringify(bind)}`);
  process.exit(2);
}

const server = new HTTPServer(component.incomingHandler);
server.listen(port, host);
const address = server.address();
console.log(`listening on http://${address.address}:${address.port}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.stop();
    process.exit(0);
  });
}
