/**
 * Which host's copy of a container owns its series. Samples are keyed by the Herd id, and a
 * migration leaves two copies for a while (the checkpointed source, the prepared or
 * restored target), each on its own host's round. Consumers keep one series per Herd id
 * (`herd metrics top`, the control loop's windows): two hosts publishing the id would make
 * it jump between them, and marking each jump as a migration would report moves that never
 * happened.
 *
 * So the series stays with its owner's copy, and moves (with a `migration` marker on the
 * new owner's first sample) only when the owner's latest round no longer lists its copy as
 * running while another host runs one. Docker's state of a checkpointed source can lag the
 * target's start by a round or more: while both run, only the owner's copy is published;
 * the target's samples start when the source has stopped, without a gap, as the source's
 * last sample before that is its last running one. A host whose listing failed is taken as
 * running nothing (a move must not wait for a host that may never answer again).
 */

export interface OwnershipVerdict {
  /** Whether this copy's sample is published (and stored). */
  publish: boolean;
  /** The host the series moved from: this sample carries the migration marker. */
  movedFrom?: string;
}

interface Owner {
  hostId: string;
  /** Whether the owner's copy was seen running (a stopped copy seen first owns the series only until a running one shows up, and that is no migration). */
  ran: boolean;
  /** Set when the series was handed over on the old owner's round: the new owner's next running sample carries the marker. */
  movedFrom?: string;
}

export class SeriesOwnership {
  private readonly owners = new Map<string, Owner>();
  /** Host → Herd ids its latest round listed as running. */
  private readonly running = new Map<string, Set<string>>();

  /** A host's round listed these containers (before its samples are decided). */
  listed(hostId: string, containers: ReadonlyArray<{ herdId: string; state: string }>): void {
    const ids = new Set<string>();
    for (const c of containers) if (c.state === 'running') ids.add(c.herdId);
    this.running.set(hostId, ids);
  }

  /** A host's round could not list its containers: none of its copies counts as running. */
  unknown(hostId: string): void {
    this.running.delete(hostId);
  }

  /** Whether the sample of `herdId`'s copy on `hostId` (running or not) is published, and whether it marks a move. */
  decide(herdId: string, hostId: string, running: boolean): OwnershipVerdict {
    const owner = this.owners.get(herdId);
    if (owner === undefined) {
      this.owners.set(herdId, { hostId, ran: running });
      return { publish: true };
    }
    if (owner.hostId === hostId) {
      if (running) {
        owner.ran = true;
        const movedFrom = owner.movedFrom;
        delete owner.movedFrom;
        return movedFrom === undefined ? { publish: true } : { publish: true, movedFrom };
      }
      // The owner's copy stopped while another host runs one: the series moves there now, and
      // this stopped copy (the migration's source) is not published.
      const other = this.runningElsewhere(herdId, hostId);
      if (other === undefined) return { publish: true };
      const from = owner.ran ? (owner.movedFrom ?? hostId) : undefined;
      this.owners.set(herdId, { hostId: other, ran: true, ...(from === undefined || from === other ? {} : { movedFrom: from }) });
      return { publish: false };
    }
    // Another host owns the series: a stopped copy here is a migration's leftover or prepared target.
    if (!running) return { publish: false };
    // Both copies run (the source's state lags): only the owner's is published until it stops.
    if (this.running.get(owner.hostId)?.has(herdId) === true) return { publish: false };
    this.owners.set(herdId, { hostId, ran: true });
    const from = owner.ran ? (owner.movedFrom ?? owner.hostId) : undefined;
    return from === undefined || from === hostId ? { publish: true } : { publish: true, movedFrom: from };
  }

  private runningElsewhere(herdId: string, hostId: string): string | undefined {
    for (const [h, ids] of this.running) if (h !== hostId && ids.has(herdId)) return h;
    return undefined;
  }
}
