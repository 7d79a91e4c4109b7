/**
 * Prometheus metrics of a daemon (prom-client): one registry per daemon with the process
 * metrics (CPU, memory, event loop) and the daemon's own families, served as text on
 * GET /metrics. Names follow Prometheus' conventions: `herd_` prefix, base units, `_total`
 * counters, histograms for durations.
 */
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { listenOn } from './listen.ts';

export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsServer {
  /** http://host:port/metrics actually bound. */
  readonly url: string;
  close(): Promise<void>;
}

export async function serveMetrics(registry: Registry, config: { host: string; port: number }, log: Logger): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`cannot collect metrics: ${String(err)}\n`),
    );
  });
  const port = await listenOn(server, config.host, config.port, 'metrics', 'metrics.host, metrics.port, or metrics.enabled: false');
  const url = `http://${config.host}:${port}/metrics`;
  log.info({ url }, 'metrics served');
  return {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
