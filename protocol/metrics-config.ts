/** The `metrics` block of every daemon's config (metrics-endpoint.ts serves it); kept apart so that loading a config does not load prom-client. */
import { z } from 'zod';

/** The port differs per daemon. */
export function metricsConfigSchema(defaultPort: number) {
  return z
    .strictObject({
      enabled: z.boolean().default(true),
      /** Where /metrics listens (loopback unless set: Prometheus on another host needs an address it reaches). */
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(defaultPort),
    })
    .prefault({});
}
export type MetricsConfig = z.infer<ReturnType<typeof metricsConfigSchema>>;

/** Default /metrics ports: compute, monitor, control. */
export const METRICS_PORTS = { compute: 9464, monitor: 9465, control: 9466 } as const;
