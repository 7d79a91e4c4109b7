/** Configuration of the control daemon (`herd control --config /etc/herd/control.yaml`). */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { MAX_MESSAGE_BYTES } from '../protocol/codec.ts';
import { brokerAuthFields, timerSeconds as seconds, type ConfigIssue } from '../protocol/config.ts';
import { commandLimitsSchema } from '../protocol/rpc.ts';
import { METRICS_PORTS, metricsConfigSchema } from '../protocol/metrics-config.ts';
import { dashboardConfigSchema } from './dashboard/dashboard-config.ts';
import { ID_PATTERN } from '../protocol/topics.ts';
import { FS_MODES, CONTROL_MODES } from '../protocol/messages.ts';
import { policyStepSchema } from '../policies/registry.ts';
import { safetyRulesSchema } from '../policies/safety/safety.ts';
import { LOG_LEVELS } from '../protocol/log.ts';

/**
 * The control loop. Defaults are Herd's published settings: a 30 s sample window, an
 * evaluation every 150 s after an initial delay of 150 s, at most 2 % missing samples.
 */
export const loopConfigSchema = z
  .strictObject({
    /** Run the loop at all (false: the daemon only runs the broker). */
    enabled: z.boolean().default(true),
    /** act: send migrations; recommend: plan and report only. */
    mode: z.enum(CONTROL_MODES).default('act'),
    /** Start paused when no saved state says otherwise (`herd control resume` starts it; the lab uses this). */
    startPaused: z.boolean().default(false),
    windowSeconds: seconds().positive().default(30),
    evaluationIntervalSeconds: seconds().positive().default(150),
    initialDelaySeconds: seconds().min(0).default(150),
    /** A container (or host) with more missing samples than this share of its window is not considered. */
    missingSamplesThreshold: z.number().min(0).max(1).default(0.02),
    /** Sampling intervals the monitors use (for the missing-sample share): the monitor's defaults. */
    hostIntervalSeconds: z.number().positive().default(5),
    containerIntervalSeconds: z.number().positive().default(2),
    /**
     * Reactive trigger: a host whose CPU utilisation or CPU pressure crosses its threshold
     * in `consecutiveSamples` samples in a row triggers an evaluation at once (at most one
     * per `minIntervalSeconds`); the safety layer still applies.
     */
    reactive: z
      .strictObject({
        enabled: z.boolean().default(true),
        cpuUtil: z.number().min(0).max(1).default(0.95),
        cpuPressurePct: z.number().min(0).max(100).default(60),
        consecutiveSamples: z.number().int().min(1).default(3),
        minIntervalSeconds: seconds().min(0).default(30),
      })
      .prefault({}),
    /** The policy chain: tried in order; the first that proposes moves makes the plan. */
    policies: z.array(policyStepSchema).default([{ policy: 'oltp-disk', args: {} }]),
    safety: safetyRulesSchema.prefault({}),
    /** Filesystem mode of the loop's migrations. */
    fsMode: z.enum(FS_MODES).default('diff'),
    /** A migration with no end after this long is recorded as timed out (its outcome is then asked of the hosts). */
    migrationTimeoutSeconds: seconds().positive().default(900),
    /** History, pause and drain state (survive a restart). */
    stateDir: z.string().default('/var/lib/herd/control'),
  })
  .prefault({});
export type LoopConfig = z.infer<typeof loopConfigSchema>;

export const controlConfigSchema = z.strictObject({
  nodeId: z.string().regex(ID_PATTERN).default('control'),
  broker: z
    .strictObject({
      /** Run the embedded aedes broker (default). Set false and give `url` to use an external MQTT 3.1.1 broker such as Mosquitto. */
      embedded: z.boolean().default(true),
      /** Where the embedded broker listens: loopback unless set (compute hosts on other machines need an address they reach). */
      host: z.string().default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(1883),
      /** External broker URL; required when embedded is false. */
      url: z.string().optional(),
      /** The control daemon's own identity on the broker (credentialsFile from herd auth init) and the CA for mqtts://. */
      ...brokerAuthFields,
      /** Who the embedded broker admits. */
      auth: z
        .strictObject({
          /** Identities with their roles and password hashes (herd auth init writes it), mode 0600. */
          usersFile: z.string().optional(),
          /** Admit anyone, unauthenticated (anyone who reaches the broker can run, stop and move containers). For tests on loopback only. */
          allowAnonymous: z.boolean().default(false),
        })
        .prefault({}),
      /** TLS on the embedded broker's listener (PEM files; herd auth init makes a CA and a certificate). */
      tls: z.strictObject({ certFile: z.string(), keyFile: z.string() }).optional(),
      /** Packets larger than this close the sender's connection (embedded broker). Daemons read no message over 8 MiB (MAX_MESSAGE_BYTES). */
      maxPacketBytes: z.number().int().min(1024).default(MAX_MESSAGE_BYTES),
    })
    .prefault({})
    .refine((b) => b.embedded || b.url !== undefined, { message: 'broker.url is required when broker.embedded is false', path: ['url'] })
    .refine((b) => !b.embedded || b.auth.usersFile !== undefined || b.auth.allowAnonymous, {
      message: 'the embedded broker needs broker.auth.usersFile (herd auth init --dir /etc/herd/auth writes it and each identity\'s credentials), or broker.auth.allowAnonymous: true to run it open (insecure)',
      path: ['auth', 'usersFile'],
    })
    .refine((b) => !b.embedded || b.auth.usersFile === undefined || b.credentialsFile !== undefined || b.username !== undefined, {
      message: "with broker.auth.usersFile the control daemon needs its own identity: broker.credentialsFile (herd auth init writes control.credentials.yaml)",
      path: ['credentialsFile'],
    }),
  /** Prometheus metrics on GET /metrics (control/control-metrics.ts). */
  metrics: metricsConfigSchema(METRICS_PORTS.control),
  /** The web dashboard (control/dashboard/): placement, live metrics, migrations, decisions. */
  dashboard: dashboardConfigSchema,
  /** Which commands the control daemon accepts (age, concurrency). */
  commands: commandLimitsSchema,
  loop: loopConfigSchema,
  logLevel: z.enum(LOG_LEVELS).default('info'),
});

export type ControlConfig = z.infer<typeof controlConfigSchema>;

/**
 * For the control loop's config loader: every forecast-greedy step whose `model` is a path
 * gets the model's JSON instead (relative paths against `baseDir`, the config file's
 * directory), so that the policy stays pure. A model it cannot read goes into `issues`,
 * naming the step and file (the step is left as it was); anything that is not a step
 * object is left to the schema to report.
 */
export function resolveForecastModels(steps: readonly unknown[], baseDir: string, issues: ConfigIssue[]): unknown[] {
  return steps.map((s, i) => {
    if (s === null || typeof s !== 'object') return s;
    const step = s as { policy?: unknown; args?: unknown };
    const model = (step.args as { model?: unknown } | null | undefined)?.model;
    if (step.policy !== 'forecast-greedy' || typeof model !== 'string') return s;
    const path = ['loop', 'policies', i, 'args', 'model'];
    const file = isAbsolute(model) ? model : resolve(baseDir, model);
    if (!existsSync(file)) {
      issues.push({ path, message: `${file}: no such file (forecast-greedy needs a trained model: herd forecast train --data TABLE.csv --model ${model})` });
      return s;
    }
    try {
      return { ...step, args: { ...(step.args as object), model: JSON.parse(readFileSync(file, 'utf8')) as unknown } };
    } catch (err) {
      issues.push({ path, message: `${file}: not JSON: ${err instanceof Error ? err.message : String(err)}` });
      return s;
    }
  });
}

/** The control config's files read in (forecast-greedy model paths): pass as loadConfig's resolveFiles. */
export function resolveControlConfigFiles(config: unknown, baseDir: string, issues: ConfigIssue[]): unknown {
  const loop = (config as { loop?: { policies?: unknown } } | undefined)?.loop;
  if (loop === null || typeof loop !== 'object' || !Array.isArray(loop.policies)) return config;
  return { ...(config as object), loop: { ...loop, policies: resolveForecastModels(loop.policies, baseDir, issues) } };
}

/**
 * Only the `loop:` section of a control config (`herd plan --snapshot`: offline planning
 * needs the chain, thresholds and safety rules, not the broker or the dashboard): the
 * other sections are neither required nor checked.
 */
export const loopSectionSchema = z.object({ loop: loopConfigSchema });
