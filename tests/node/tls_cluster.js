'use strict';
// node-redis (createCluster) and ioredis (Cluster) over TLS: a key in every slot,
// written and read back through the cluster's TLS ports.
// usage: node tls_cluster.js <tls port of any node> <node-redis|ioredis>
// env: TLS_CA, TLS_CERT, TLS_KEY (PEM file paths)
const fs = require('fs');
const { everySlot, main } = require('./slots');

const tls = {
  ca: fs.readFileSync(process.env.TLS_CA),
  cert: fs.readFileSync(process.env.TLS_CERT),
  key: fs.readFileSync(process.env.TLS_KEY),
};
const which = process.argv[3];

async function nodeRedis(port) {
  const { createCluster } = require('redis');
  const cluster = createCluster({
    rootNodes: [{ url: `rediss://127.0.0.1:${port}` }],
    defaults: { socket: { tls: true, ...tls, connectTimeout: 5000, reconnectStrategy: false } },
  });
  cluster.on('error', () => {});
  await cluster.connect();
  try {
    console.log(`node-redis: ${cluster.masters.length} masters discovered`);
    return await everySlot(cluster, 'node-redis-tls');
  } finally {
    await cluster.close();
  }
}

async function ioredis(port) {
  const { Cluster } = require('ioredis');
  const cluster = new Cluster([{ host: '127.0.0.1', port }], {
    enableAutoPipelining: true,
    clusterRetryStrategy: () => null,
    slotsRefreshTimeout: 5000,
    redisOptions: { connectTimeout: 5000, maxRetriesPerRequest: 2, tls },
  });
  cluster.on('error', () => {});
  await new Promise((resolve, reject) => {
    cluster.once('ready', resolve);
    cluster.once('end', () => reject(new Error('ioredis cluster ended before ready')));
  });
  try {
    console.log(`ioredis: ${cluster.nodes('master').length} masters discovered`);
    return await everySlot(cluster, 'ioredis-tls');
  } finally {
    await cluster.quit();
  }
}

main(which === 'ioredis' ? ioredis : nodeRedis);
