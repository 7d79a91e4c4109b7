/** The `dashboard` block of the control daemon's config (dashboard-server.ts serves it); kept apart so that loading a config does not load Fastify. */
import { z } from 'zod';

export const DEFAULT_DASHBOARD_PORT = 9480;

export const dashboardConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true),
    /** Where the page is served: loopback unless set. */
    host: z.string().default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(DEFAULT_DASHBOARD_PORT),
    /** Offer pause, resume and drain (basic auth of an operator identity in broker.auth.usersFile). */
    actions: z.boolean().default(false),
    /** HTTPS (PEM files; herd auth init's broker certificate does). Needed for actions on an address other than loopback. */
    tls: z.strictObject({ certFile: z.string(), keyFile: z.string() }).optional(),
  })
  .prefault({})
  .refine((d) => !d.actions || d.tls !== undefined || isLoopback(d.host), {
    message: 'dashboard.actions on an address other than loopback needs dashboard.tls (passwords would cross the network in clear)',
    path: ['tls'],
  });
export type DashboardConfig = z.infer<typeof dashboardConfigSchema>;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
