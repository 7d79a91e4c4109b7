/** Configuration of the control daemon (`herd control --config /etc/herd/control.yaml`). */
import { z } from 'zod';
import { ID_PATTERN } from '../protocol/topics.ts';

export const controlConfigSchema = z.strictObject({
  nodeId: z.string().regex(ID_PATTERN).default('control'),
  broker: z
    .strictObject({
      /** Run the embedded aedes broker (default). Set false and give `url` to use an external MQTT 3.1.1 broker such as Mosquitto. */
      embedded: z.boolean().default(true),
      /** Where the embedded broker listens. */
      host: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(1883),
      /** External broker URL; required when embedded is false. */
      url: z.string().optional(),
      username: z.string().optional(),
      password: z.string().optional(),
    })
    .prefault({})
    .refine((b) => b.embedded || b.url !== undefined, { message: 'broker.url is required when broker.embedded is false', path: ['url'] }),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
});

export type ControlConfig = z.infer<typeof controlConfigSchema>;
