'use strict';
// node-redis createClient (plain, not cluster mode) through `pynode proxy`: MSET, MGET and
// DEL of keys in different slots, for a while, keeping a ledger of what was acknowledged.
// usage: node proxy_ledger.js <proxy port> <seconds> <comma-separated keys>
// It stops after <seconds> or when its stdin closes, whichever comes first.
// Prints one JSON line: {"rounds", "errors": [...], "expect": {key: value or null}}.
const { createClient } = require('redis');

async function run() {
  const port = Number(process.argv[2]);
  const seconds = Number(process.argv[3]);
  const client = createClient({ url: `redis://127.0.0.1:${port}`,
    socket: { connectTimeout: 5000, reconnectStrategy: false } });
  const errors = [];
  client.on('error', (e) => errors.push('client error: ' + e));
  await client.connect();
  const keys = process.argv[4].split(',');
  const expect = {};
  const end = Date.now() + seconds * 1000;
  let stopped = false;
  process.stdin.on('end', () => { stopped = true; });
  process.stdin.on('error', () => { stopped = true; });
  process.stdin.resume();
  let round = 0;
  while (Date.now() < end && !stopped) {
    round++;
    try {
      if (round % 7 === 0) {
        const n = await client.del(keys.slice(0, 6));
        keys.slice(0, 6).forEach((k) => { expect[k] = null; });
        if (n > 6) errors.push(`DEL said ${n} of 6`);
      } else {
        const pairs = keys.map((k) => [k, `${round}`]);
        await client.mSet(pairs);
        keys.forEach((k) => { expect[k] = `${round}`; });
      }
      const got = await client.mGet(keys);
      keys.forEach((k, j) => {
        if (got[j] !== expect[k]) errors.push(`round ${round}: ${k} = ${got[j]}, want ${expect[k]}`);
      });
    } catch (e) {
      errors.push(`round ${round}: ${e}`);
      // the outcome of the failed command is unknown: forget what it would have written
      keys.forEach((k) => { delete expect[k]; });
    }
  }
  await client.quit();
  process.stdin.destroy();
  console.log(JSON.stringify({ rounds: round, errors, expect }));
}

run().then(() => process.exit(0), (e) => { console.error('FAIL: ' + e); process.exit(1); });
