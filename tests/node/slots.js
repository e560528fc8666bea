'use strict';
// Shared by the cluster client checks: CRC16 (XMODEM, as Redis Cluster uses), a
// hash-tagged key for every one of the 16384 slots, and a bounded runner.

const SLOTS = 16384;

const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

function crc16(buf) {
  let crc = 0;
  for (const b of buf) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ b) & 0xff];
  return crc;
}

function keySlot(key) {
  let k = Buffer.from(key);
  const s = k.indexOf(0x7b); // {
  if (s !== -1) {
    const e = k.indexOf(0x7d, s + 1); // }
    if (e > s + 1) k = k.subarray(s + 1, e);
  }
  return crc16(k) & (SLOTS - 1);
}

// keys[slot] = "{tag}" with keySlot(keys[slot]) === slot
function slotKeys() {
  const keys = new Array(SLOTS);
  let left = SLOTS;
  for (let i = 0; left > 0; i++) {
    const tag = String(i);
    const s = crc16(Buffer.from(tag)) & (SLOTS - 1);
    if (keys[s] === undefined) { keys[s] = '{' + tag + '}'; left--; }
  }
  return keys;
}

// Runs SET then GET for a key in every slot through `client`, `batch` commands in
// flight at a time; returns the list of mismatches.
async function everySlot(client, label, batch = 500) {
  if (keySlot('foo') !== 12182) throw new Error('crc16 self-check failed');
  const keys = slotKeys();
  for (let i = 0; i < SLOTS; i += batch) {
    const part = keys.slice(i, i + batch);
    const res = await Promise.all(part.map((k, j) => client.set(k, label + ':' + (i + j))));
    res.forEach((r, j) => { if (r !== 'OK') throw new Error(`SET ${part[j]} -> ${r}`); });
  }
  const wrong = [];
  for (let i = 0; i < SLOTS; i += batch) {
    const part = keys.slice(i, i + batch);
    const res = await Promise.all(part.map((k) => client.get(k)));
    res.forEach((v, j) => {
      const want = label + ':' + (i + j);
      if (v !== want) wrong.push(`slot ${i + j} key ${part[j]}: got ${JSON.stringify(v)} want ${want}`);
    });
  }
  return wrong;
}

// main(fn): parse the port argument, run fn(port) with a deadline, exit 0 only on success.
function main(fn) {
  const port = Number(process.argv[2]);
  if (!port) {
    console.error('usage: node ' + process.argv[1] + ' <port>');
    process.exit(2);
  }
  const timer = setTimeout(() => {
    console.error('FAIL: timed out');
    process.exit(3);
  }, Number(process.env.CLIENT_TIMEOUT_MS || 60000));
  fn(port).then((wrong) => {
    clearTimeout(timer);
    if (wrong.length) {
      console.error(`FAIL: ${wrong.length} of ${SLOTS} keys read back wrong:\n` + wrong.slice(0, 20).join('\n'));
      process.exit(1);
    }
    console.log(`OK: ${SLOTS} slots written and read back`);
    process.exit(0);
  }, (err) => {
    clearTimeout(timer);
    console.error('FAIL: ' + (err && err.stack ? err.stack : err));
    process.exit(1);
  });
}

module.exports = { SLOTS, crc16, keySlot, slotKeys, everySlot, main };
