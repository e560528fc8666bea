'use strict';
// BullMQ on a Redis Cluster: a Queue, a Worker and QueueEvents over an ioredis
// Cluster, all keys under the prefix "{bq}" (one hash tag, so one slot).  BullMQ
// runs nearly everything through Lua scripts (EVALSHA, with SCRIPT LOAD on
// NOSCRIPT), blocks on BZPOPMIN and reads its event stream with XREAD BLOCK.
//
// Jobs: one that fails its first two attempts and succeeds on the third (attempts
// + fixed backoff), one delayed by DELAY_MS, and BATCH plain ones added in bulk.
// Waits (bounded) until all are completed, checks return values, attemptsMade,
// the delayed job's processedOn - timestamp >= delay, the completed set and the
// events stream; prints one line "SUMMARY {json}" and exits 0, or prints
// "FAIL: ..." and exits non-zero (1: a check or a command failed, 2: usage,
// 3: timed out).
//
// usage: node bullmq_cluster.js <host:port | port> [more seeds ...]
//   env: BULLMQ_TIMEOUT_MS (default 60000), BULLMQ_QUEUE (default unique per run)
//
// The ioredis used is the one BullMQ itself depends on (bullmq 5 pins ioredis 5
// exactly; tests/node's own ioredis is 6), i.e. the combination BullMQ supports.

const path = require('path');
const { Queue, Worker, QueueEvents } = require('bullmq');
const { keySlot } = require('./slots');

const bullmqDir = path.dirname(require.resolve('bullmq'));
const IORedis = require(require.resolve('ioredis', { paths: [bullmqDir] }));
const IOREDIS_VERSION = require(require.resolve('ioredis/package.json', { paths: [bullmqDir] })).version;
const BULLMQ_VERSION = require('bullmq/package.json').version;

const PREFIX = '{bq}';
const DELAY_MS = 500;
const BATCH = 50;
const FLAKY_FAILURES = 2; // attempts that throw before the one that succeeds
const FLAKY_ATTEMPTS = 3;
const BACKOFF_MS = 200;
const TIMEOUT_MS = Number(process.env.BULLMQ_TIMEOUT_MS || 60000);
const CLOSE_TIMEOUT_MS = 10000;

function parseSeeds(argv) {
  const seeds = argv.map((a) => {
    const m = /^(?:([^:]+):)?(\d+)$/.exec(a);
    if (!m) throw new Usage('bad seed address ' + JSON.stringify(a) + ' (want host:port or port)');
    return { host: m[1] || '127.0.0.1', port: Number(m[2]) };
  });
  if (!seeds.length) throw new Usage('usage: node bullmq_cluster.js <host:port | port> [...]');
  return seeds;
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(what + ' did not finish within ' + ms + ' ms')), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

class Timeout extends Error {}
class Usage extends Error {}

async function run(seeds, resources) {
  const queueName = process.env.BULLMQ_QUEUE || 'accept-' + process.pid + '-' + Date.now();
  const cluster = new IORedis.Cluster(seeds, {
    // BullMQ workers block (BZPOPMIN): requests must never be retried-and-dropped
    redisOptions: { maxRetriesPerRequest: null, connectTimeout: 5000 },
    slotsRefreshTimeout: 5000,
    clusterRetryStrategy: (times) => (times > 20 ? null : 200),
  });
  resources.cluster = cluster;
  const connErrors = [];
  const noteError = (where, e) => {
    const msg = where + String(e && e.message);
    if (connErrors[connErrors.length - 1] !== msg) connErrors.push(msg);
  };
  cluster.on('error', (e) => noteError('', e));
  await withTimeout(new Promise((resolve, reject) => {
    cluster.once('ready', resolve);
    cluster.once('end', () => reject(new Error('ioredis cluster ended before ready: ' + connErrors.join('; '))));
  }), 15000, 'ioredis Cluster ready');
  const masters = cluster.nodes('master').length;

  const queue = new Queue(queueName, { connection: cluster, prefix: PREFIX });
  resources.queue = queue;
  queue.on('error', (e) => noteError('queue: ', e));
  await queue.waitUntilReady();

  // read the queue's events stream from its beginning (the queue is new), so no
  // event can be missed between start-up and the first XREAD
  const events = new QueueEvents(queueName, {
    connection: cluster, prefix: PREFIX, lastEventId: '0-0', blockingTimeout: 1000,
  });
  resources.events = events;
  events.on('error', (e) => noteError('queueEvents: ', e));
  const eventCounts = { completed: 0, failed: 0, delayed: 0, added: 0 };
  for (const name of Object.keys(eventCounts)) events.on(name, () => { eventCounts[name] += 1; });
  await events.waitUntilReady();

  const calls = {}; // job id -> [{ at, attemptsMade }] as seen by the processor
  const failures = []; // worker 'failed' events: [jobName, attemptsMade, message]
  const completedIds = new Set();
  const expected = 2 + BATCH;
  let allDone;
  const done = new Promise((resolve) => { allDone = resolve; });

  const worker = new Worker(queueName, async (job) => {
    (calls[job.id] = calls[job.id] || []).push({ at: Date.now(), attemptsMade: job.attemptsMade });
    switch (job.name) {
      case 'flaky':
        if (calls[job.id].length <= FLAKY_FAILURES) throw new Error('flaky failure #' + calls[job.id].length);
        return { ok: true, attempt: calls[job.id].length };
      case 'delayed':
        return { ok: true, tag: job.data.tag };
      case 'batch':
        return job.data.n * 2;
      default:
        throw new Error('unexpected job name ' + job.name);
    }
  }, { connection: cluster, prefix: PREFIX, concurrency: 5, drainDelay: 1 });
  resources.worker = worker;
  worker.on('error', (e) => noteError('worker: ', e));
  worker.on('failed', (job, err) => failures.push([job && job.name, job && job.attemptsMade, err.message]));
  worker.on('completed', (job) => {
    completedIds.add(job.id);
    if (completedIds.size >= expected) allDone();
  });
  await worker.waitUntilReady();

  const t0 = Date.now();
  const flaky = await queue.add('flaky', { kind: 'flaky' }, {
    attempts: FLAKY_ATTEMPTS, backoff: { type: 'fixed', delay: BACKOFF_MS },
  });
  const delayed = await queue.add('delayed', { tag: 'late' }, { delay: DELAY_MS });
  const batch = await queue.addBulk(Array.from({ length: BATCH }, (_, n) => ({ name: 'batch', data: { n } })));

  // everything must be completed before the deadline (the process-wide timer in
  // main() is the last resort; this one reports what was still missing)
  let timer;
  const timedOut = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Timeout(
      `only ${completedIds.size} of ${expected} jobs completed after ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    await Promise.race([done, timedOut]);
  } catch (e) {
    let counts = '?';
    try {
      counts = JSON.stringify(await withTimeout(queue.getJobCounts(), 5000, 'getJobCounts'));
    } catch (e2) { counts = String(e2.message); }
    e.message += `; job counts ${counts}; worker failures ${JSON.stringify(failures.slice(0, 5))}; ` +
      `connection errors ${JSON.stringify(connErrors.slice(0, 5))}`;
    throw e;
  } finally {
    clearTimeout(timer);
  }
  const elapsedMs = Date.now() - t0;

  // read every job back from the server
  const problems = [];
  const fj = await queue.getJob(flaky.id);
  const dj = await queue.getJob(delayed.id);
  const bjs = await Promise.all(batch.map((j) => queue.getJob(j.id)));
  const states = {
    flaky: await fj.getState(), delayed: await dj.getState(),
  };

  if (states.flaky !== 'completed') problems.push('flaky job state ' + states.flaky);
  if (JSON.stringify(fj.returnvalue) !== JSON.stringify({ ok: true, attempt: FLAKY_FAILURES + 1 })) {
    problems.push('flaky job returnvalue ' + JSON.stringify(fj.returnvalue));
  }
  if (fj.attemptsMade !== FLAKY_FAILURES + 1) problems.push('flaky job attemptsMade ' + fj.attemptsMade);
  if ((calls[flaky.id] || []).length !== FLAKY_FAILURES + 1) {
    problems.push('flaky job processed ' + (calls[flaky.id] || []).length + ' times');
  }
  const flakyFailures = failures.filter((f) => f[0] === 'flaky').length;
  if (flakyFailures !== FLAKY_FAILURES) problems.push('flaky job failed events ' + flakyFailures);
  if (!Array.isArray(fj.stacktrace) || fj.stacktrace.length !== FLAKY_FAILURES) {
    problems.push('flaky job stacktrace entries ' + JSON.stringify(fj.stacktrace && fj.stacktrace.length));
  }
  // each retry waited for the backoff
  const fc = calls[flaky.id] || [];
  const retryGapsMs = fc.slice(1).map((c, i) => c.at - fc[i].at);
  if (retryGapsMs.some((g) => g < BACKOFF_MS - 20)) problems.push('retry before backoff: gaps ' + retryGapsMs);

  const delayedGapMs = dj.processedOn - dj.timestamp;
  const delayedSeenGapMs = calls[delayed.id] ? calls[delayed.id][0].at - dj.timestamp : null;
  if (states.delayed !== 'completed') problems.push('delayed job state ' + states.delayed);
  if (dj.opts.delay !== DELAY_MS) problems.push('delayed job opts.delay ' + dj.opts.delay);
  if (!(delayedGapMs >= DELAY_MS)) problems.push(`delayed job processed ${delayedGapMs} ms after it was added`);
  if (!(delayedSeenGapMs >= DELAY_MS)) problems.push(`delayed job reached the worker after ${delayedSeenGapMs} ms`);
  if (JSON.stringify(dj.returnvalue) !== JSON.stringify({ ok: true, tag: 'late' })) {
    problems.push('delayed job returnvalue ' + JSON.stringify(dj.returnvalue));
  }
  if ((calls[delayed.id] || []).length !== 1) problems.push('delayed job processed ' + (calls[delayed.id] || []).length + ' times');

  let batchOk = 0;
  bjs.forEach((j, n) => {
    if (!j) { problems.push(`batch job ${n} missing`); return; }
    if (j.returnvalue !== n * 2 || !j.finishedOn || j.attemptsMade !== 1) {
      problems.push(`batch job ${n}: returnvalue ${JSON.stringify(j.returnvalue)} attemptsMade ${j.attemptsMade}`);
    } else {
      batchOk += 1;
    }
  });

  const counts = await queue.getJobCounts('completed', 'failed', 'delayed', 'wait', 'active');
  if (counts.completed !== expected || counts.failed || counts.delayed || counts.wait || counts.active) {
    problems.push('job counts ' + JSON.stringify(counts));
  }
  // the events stream (XREAD BLOCK) saw every completion
  const evDeadline = Date.now() + 10000;
  while (eventCounts.completed < expected && Date.now() < evDeadline) await new Promise((r) => setTimeout(r, 50));
  if (eventCounts.completed !== expected) problems.push('completed events ' + eventCounts.completed);
  if (eventCounts.added !== expected) problems.push('added events ' + eventCounts.added);
  // one for the delayed job, one for each backoff of the flaky one
  if (eventCounts.delayed !== 1 + FLAKY_FAILURES) problems.push('delayed events ' + eventCounts.delayed);

  // every BullMQ key of the queue hashes to the slot of {bq}
  const slot = keySlot(PREFIX + ':' + queueName + ':completed');

  return {
    summary: {
      ok: problems.length === 0,
      bullmq: BULLMQ_VERSION,
      ioredis: IOREDIS_VERSION,
      masters,
      queue: queueName,
      prefix: PREFIX,
      slot,
      expected,
      completed: completedIds.size,
      elapsedMs,
      jobCounts: counts,
      events: eventCounts,
      flaky: {
        id: flaky.id, state: states.flaky, attemptsMade: fj.attemptsMade, processed: fc.length,
        failedEvents: flakyFailures, returnvalue: fj.returnvalue, retryGapsMs,
      },
      delayed: {
        id: delayed.id, state: states.delayed, delay: dj.opts.delay, timestamp: dj.timestamp,
        processedOn: dj.processedOn, processedAfterMs: delayedGapMs, workerSawAfterMs: delayedSeenGapMs,
        returnvalue: dj.returnvalue,
      },
      batch: { jobs: BATCH, ok: batchOk },
      connectionErrors: connErrors.slice(0, 10),
    },
    problems,
  };
}

async function closeAll(resources) {
  // worker first (it stops taking jobs), then the events reader and the queue,
  // then the shared cluster connection; bounded, so a dead server cannot hang us
  const steps = [
    ['worker', () => resources.worker && resources.worker.close()],
    ['queueEvents', () => resources.events && resources.events.close()],
    ['queue', () => resources.queue && resources.queue.close()],
    ['cluster', () => resources.cluster && resources.cluster.quit()],
  ];
  const errors = [];
  for (const [name, step] of steps) {
    try {
      await withTimeout(Promise.resolve().then(step), CLOSE_TIMEOUT_MS, 'closing ' + name);
    } catch (e) {
      errors.push(e.message);
      if (name === 'cluster' && resources.cluster) resources.cluster.disconnect();
    }
  }
  return errors;
}

async function main() {
  const resources = {};
  // last resort: the whole run, closing included, is bounded
  const hard = setTimeout(() => {
    console.error('FAIL: timed out (hard limit ' + (TIMEOUT_MS + 3 * CLOSE_TIMEOUT_MS) + ' ms)');
    process.exit(3);
  }, TIMEOUT_MS + 3 * CLOSE_TIMEOUT_MS);
  hard.unref();
  let code = 0;
  try {
    const seeds = parseSeeds(process.argv.slice(2));
    const { summary, problems } = await run(seeds, resources);
    console.log('SUMMARY ' + JSON.stringify(summary));
    if (problems.length) {
      console.error('FAIL: ' + problems.length + ' checks failed:\n  ' + problems.join('\n  '));
      code = 1;
    }
  } catch (e) {
    // a timeout or a usage error is told by its message; anything else with its stack
    const plain = e instanceof Timeout || e instanceof Usage;
    console.error('FAIL: ' + (plain ? e.message : e && e.stack ? e.stack : e));
    code = e instanceof Timeout ? 3 : e instanceof Usage ? 2 : 1;
  }
  const closeErrors = await closeAll(resources);
  if (closeErrors.length) {
    console.error('FAIL: closing: ' + closeErrors.join('; '));
    if (!code) code = 1;
  }
  clearTimeout(hard);
  if (!code) console.log('OK: bullmq jobs completed on the cluster');
  process.exit(code);
}

main();
