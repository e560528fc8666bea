'use strict';
// ioredis Cluster: a key in every slot, written and read back (auto-pipelined).
// usage: node ioredis_cluster.js <port of any cluster node>
const { Cluster } = require('ioredis');
const { everySlot, main } = require('./slots');

main(async (port) => {
  const cluster = new Cluster([{ host: '127.0.0.1', port }], {
    enableAutoPipelining: true,
    clusterRetryStrategy: () => null,
    slotsRefreshTimeout: 5000,
    redisOptions: { connectTimeout: 5000, maxRetriesPerRequest: 2 },
  });
  cluster.on('error', () => {});
  await new Promise((resolve, reject) => {
    cluster.once('ready', resolve);
    cluster.once('end', () => reject(new Error('ioredis cluster ended before ready')));
  });
  try {
    const masters = cluster.nodes('master').length;
    if (masters < 1) throw new Error('no masters discovered');
    const wrong = await everySlot(cluster, 'ioredis');
    await cluster.mset('{user1}:a', '1', '{user1}:b', '2');
    const got = await cluster.mget('{user1}:a', '{user1}:b');
    if (JSON.stringify(got) !== '["1","2"]') wrong.push('MGET in one hash tag: ' + JSON.stringify(got));
    console.log(`ioredis: ${masters} masters discovered`);
    return wrong;
  } finally {
    await cluster.quit();
  }
});
