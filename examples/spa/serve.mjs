#!/usr/bin/env node
// Serves this example SPA from its own origin (Node 20, no dependencies).
//
//   node examples/spa/serve.mjs --port 5173 --api http://127.0.0.1:3000
//
// --api sets window.MAILCODE_API (served as config.js); without it, the config.js file next to
// this script is served. --host picks the address to listen on (default 127.0.0.1).
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FILES = {
  '/': ['index.html', 'text/html'],
  '/index.html': ['index.html', 'text/html'],
  '/spa.js': ['spa.js', 'text/javascript'],
  '/spa.css': ['spa.css', 'text/css'],
  '/config.js': ['config.js', 'text/javascript'],
};

let opts;
try {
  opts = parseArgs({
    options: {
      port: { type: 'string', default: '5173' },
      host: { type: 'string', default: '127.0.0.1' },
      api: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (err) {
  console.error(`${err.message}\nusage: node serve.mjs [--port 5173] [--host 127.0.0.1] [--api http://127.0.0.1:3000]`);
  process.exit(2);
}
if (opts.help) {
  console.log('usage: node serve.mjs [--port 5173] [--host 127.0.0.1] [--api http://127.0.0.1:3000]');
  process.exit(0);
}
const port = Number(opts.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port must be a port number, got ${JSON.stringify(opts.port)}`);
  process.exit(2);
}
let api = null;
if (opts.api !== undefined) {
  try {
    const u = new URL(opts.api);
    if (!/^https?:$/.test(u.protocol)) throw new Error('not http(s)');
    api = u.origin;
  } catch {
    console.error(`--api must be mailcode's origin, like http://127.0.0.1:3000, got ${JSON.stringify(opts.api)}`);
    process.exit(2);
  }
}

const server = http.createServer((req, res) => {
  const route = new URL(req.url, 'http://x').pathname;
  const file = FILES[route];
  if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
    res.end('not found\n');
    return;
  }
  const body = route === '/config.js' && api
    ? `window.MAILCODE_API = ${JSON.stringify(api)};\n`
    : fs.readFileSync(path.join(HERE, file[0]));
  res.writeHead(200, { 'Content-Type': `${file[1]}; charset=utf-8`, 'Cache-Control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : body);
});

server.on('error', (err) => {
  console.error(err.code === 'EADDRINUSE' ? `port ${port} is in use; pick another with --port` : err.message);
  process.exit(1);
});

server.listen(port, opts.host, () => {
  const { port: actual } = server.address();
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const origin = `http://${host}:${actual}`;
  console.log(`example SPA on ${origin}/ calling mailcode at ${api || '(config.js)'}`);
  console.log(`mailcode must allow this origin: mailcode --cors-origin ${origin}`);
});

for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
