// Portkey's gateway in N processes sharing one port (Node's cluster module: the primary hands
// connections to the workers in turn), for bench/workers.sh to compare process for process.
//   WORKERS=N PORTKEY_SERVER=/path/to/start-server.js node bench/portkey_cluster.mjs --port=8787
import cluster from "node:cluster";

const workers = Number.parseInt(process.env.WORKERS ?? "1", 10);
if (cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) cluster.fork();
} else {
  await import(process.env.PORTKEY_SERVER);
}
