'use strict';
// node-redis (`redis` package) createCluster: a key in every slot, written and read back.
// usage: node node_redis_cluster.js <port of any cluster node>
const { createCluster } = require('redis');
const { everySlot, main } = require('./slots');

main(async (port) => {
  const cluster = createCluster({
    rootNodes: [{ url: `redis://127.0.0.1:${port}` }],
    defaults: { socket: { connectTimeout: 5000, reconnectStrategy: false } },
  });
  let lastError = null;
  cluster.on('error', (err) => { lastError = err; });
  await cluster.connect();
  try {
    const masters = cluster.masters.length;
    if (masters < 1) throw new Error('no masters discovered');
    const wrong = await everySlot(cluster, 'node-redis');
    // a multi-key command inside one hash tag
    await cluster.mSet([['{user1}:a', '1'], ['{user1}:b', '2']]);
    const got = await cluster.mGet(['{user1}:a', '{user1}:b']);
    if (JSON.stringify(got) !== '["1","2"]') wrong.push('MGET in one hash tag: ' + JSON.stringify(got));
    console.log(`node-redis: ${masters} masters discovered`);
    if (lastError) console.log('node-redis reported (non-fatal): ' + lastError);
    return wrong;
  } finally {
    await cluster.close();
  }
});
