// The original recipe for the load test: express 4 with the ssestream
// package, one SSEStream piped into each response, a comment every 15 s to
// keep idle streams alive. Same endpoints and start-up protocol as the Rust
// servers (benches/load/README.md): prints its port, exits when stdin closes.
'use strict';

const express = require('express');
const SSEStream = require('ssestream').default;

// Must match PAYLOAD in benches/load/common/src/lib.rs.
const PAYLOAD = '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
const KEEP_ALIVE_MS = 15000;

function count(value) {
  if (typeof value !== 'string' || !/^[0-9]+$/.test(value)) return null;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : null;
}

// Wall-clock nanoseconds since the Unix epoch (microsecond resolution).
function nowNs() {
  const micros = Math.round((performance.timeOrigin + performance.now()) * 1000);
  return (BigInt(micros) * 1000n).toString();
}

const app = express();
const subscribers = new Set();
let sequence = 0;

// n events with ids 1..=n (ssestream drops falsy ids, so no id 0), written
// as fast as the client reads: stop when write() says the buffer is full,
// go on at 'drain'.
app.get('/sse/burst', (req, res) => {
  const n = count(req.query.n);
  if (n === null) return res.status(400).send('n must be a count\n');
  const sse = new SSEStream(req);
  sse.pipe(res);
  let id = 1;
  let gone = false;
  res.on('close', () => { gone = true; });
  const pump = () => {
    while (!gone && id <= n) {
      const more = sse.write({ id: String(id), data: PAYLOAD });
      id += 1;
      if (!more) {
        sse.once('drain', pump);
        return;
      }
    }
    if (!gone) sse.end();
  };
  pump();
});

app.get('/sse/live', (req, res) => {
  const sse = new SSEStream(req);
  sse.pipe(res);
  const keepAlive = setInterval(() => sse.write({ comment: 'keep-alive' }), KEEP_ALIVE_MS);
  subscribers.add(sse);
  res.on('close', () => {
    clearInterval(keepAlive);
    subscribers.delete(sse);
    sse.unpipe(res);
  });
});

// Publishes `count` events, each carrying its send time; answers with the
// number of subscribers.
app.post('/publish', (req, res) => {
  const k = count(req.query.count);
  if (k === null) return res.status(400).send('count must be a count\n');
  for (let i = 0; i < k; i += 1) {
    sequence += 1;
    const message = { id: String(sequence), data: nowNs() };
    for (const sse of subscribers) sse.write(message);
  }
  res.send(`${subscribers.size}\n`);
});

const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
