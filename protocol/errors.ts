/**
 * Herd's error catalogue. Every failure that crosses a process boundary (an MQTT reply,
 * a CLI exit) carries one of these stable codes. On the wire an error is
 * `{ code, message, retryable }` (see WireError).
 *
 * Codes never change meaning once published; add new ones instead.
 */
export const ERROR_CATALOGUE = {
  // --- input and contract
  BAD_MESSAGE: { retryable: false, summary: 'A message was not valid JSON or did not match its schema; the message names the field.' },
  UNKNOWN_COMMAND: { retryable: false, summary: 'A command type that the receiving daemon does not implement.' },
  BAD_CONFIG: { retryable: false, summary: 'A configuration file or flag failed validation; every problem is listed with its path.' },
  BAD_USAGE: { retryable: false, summary: 'A CLI invocation with an unknown subcommand, unknown flag or bad argument.' },
  // --- lookups
  UNKNOWN_HOST: { retryable: false, summary: 'No compute host with that id has ever reported status.' },
  HOST_OFFLINE: { retryable: true, summary: 'The compute host is known but offline (its last will was published).' },
  UNKNOWN_CONTAINER: { retryable: false, summary: 'No container with that name or Herd id on the host(s) asked.' },
  UNKNOWN_MIGRATION: { retryable: false, summary: 'No online host knows a migration with that id.' },
  NOT_MANAGED: { retryable: false, summary: 'The container exists but has no Herd id label, so Herd will not touch it.' },
  IMAGE_MISSING: { retryable: false, summary: 'The image the container needs is not present on the target host.' },
  INSUFFICIENT_DISK: { retryable: false, summary: 'The target host lacks the free disk the transfer needs.' },
  // --- state
  NOT_MIGRATABLE: { retryable: false, summary: 'CRIU cannot checkpoint the container on this host (e.g. non-root processes without CAP_SYS_RESOURCE); found before anything was frozen, the message names the cause and the fix.' },
  ALREADY_MIGRATING: { retryable: true, summary: 'The container already has a migration in flight.' },
  CONFLICT: { retryable: false, summary: 'The request conflicts with current state (e.g. a name already in use).' },
  // --- runtime failures
  DOCKER_FAILED: { retryable: true, summary: 'The Docker daemon refused or failed a call.' },
  CHECKPOINT_FAILED: { retryable: true, summary: 'CRIU could not checkpoint the container; it keeps running on its host.' },
  RESTORE_FAILED: { retryable: true, summary: 'CRIU could not restore the container.' },
  TRANSFER_FAILED: { retryable: true, summary: 'Moving checkpoint images or the filesystem between hosts failed.' },
  ROLLED_BACK: { retryable: true, summary: 'A migration failed and was rolled back; the container runs on its source host.' },
  IN_DOUBT: { retryable: true, summary: 'The outcome of a restore on the target is not known yet (no answer, no fence): the container stays frozen, never duplicated, and the compute daemon keeps resolving it; `herd migrate --status <id>` shows the outcome.' },
  TIMEOUT: { retryable: true, summary: 'No reply arrived in time.' },
  BROKER_UNAVAILABLE: { retryable: true, summary: 'The MQTT broker could not be reached.' },
  NOT_AUTHORIZED: { retryable: false, summary: 'The broker refused the credentials or client id, or the sender may not send this command; the message names the identity and the rule.' },
  STALE_COMMAND: { retryable: false, summary: 'A command older than the receiver accepts (`commands.maxAgeSeconds`) or dated in the future: a replay or a clock off by more than that.' },
  BUSY: { retryable: true, summary: 'The daemon already runs as many commands as it allows at once (`commands.maxConcurrent`).' },
  PCP_UNAVAILABLE: { retryable: true, summary: 'A pmproxy (PCP REST API) did not answer in time, refused the connection or answered with an HTTP error.' },
  // --- environment
  NOT_ROOT: { retryable: false, summary: 'The operation needs root privileges.' },
  MISSING_DEPENDENCY: { retryable: false, summary: 'A required program, package or kernel feature is missing; the message names it and how to install it.' },
  LAB_FAILED: { retryable: false, summary: 'Building or tearing down the local lab failed; the message names the step.' },
  INTERNAL: { retryable: false, summary: 'A bug: an unexpected exception. The message carries its text.' },
} as const satisfies Record<string, { retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/** An error as it travels in a reply or event. */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

/** The one error class of Herd: a stable code, a message for humans, and an optional cause. */
export class HerdError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HerdError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CATALOGUE[code].retryable;
  }

  toWire(): WireError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }

  static fromWire(wire: WireError): HerdError {
    return new HerdError(wire.code, wire.message, { retryable: wire.retryable });
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CATALOGUE, value);
}

/** Wraps anything thrown into a HerdError, keeping HerdErrors as they are. */
export function toHerdError(err: unknown, fallback: ErrorCode = 'INTERNAL'): HerdError {
  if (err instanceof HerdError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HerdError(fallback, message, { cause: err });
}
