/** SeriesOwnership: one series per Herd id, moved (and marked) only when the owner's copy no longer runs. */
import { describe, expect, it } from 'vitest';
import { SeriesOwnership } from './series-ownership.ts';

/** One host's round: it lists its copy of "web" in `state` and decides on its sample. */
const round = (o: SeriesOwnership, hostId: string, state: 'running' | 'exited' | 'created') => {
  o.listed(hostId, [{ herdId: 'web', state }]);
  return o.decide('web', hostId, state === 'running');
};

describe('SeriesOwnership', () => {
  it('does not flip the series between hosts while both copies report running', () => {
    const o = new SeriesOwnership();
    expect(round(o, 'h1', 'running')).toEqual({ publish: true });
    const verdicts = [];
    for (let i = 0; i < 3; i++) verdicts.push(round(o, 'h2', 'running'), round(o, 'h1', 'running'));
    expect(verdicts.filter((v) => v.movedFrom !== undefined)).toEqual([]);
    expect(verdicts.map((v) => v.publish)).toEqual([false, true, false, true, false, true]);
  });

  it('moves with one marker when the source stops, whichever host\'s round sees it first', () => {
    // Target's round first: it waits for the source's copy to stop.
    const a = new SeriesOwnership();
    round(a, 'h1', 'running');
    expect(round(a, 'h2', 'running')).toEqual({ publish: false });
    expect(round(a, 'h1', 'exited')).toEqual({ publish: false }); // handed over: the stopped source is not published
    expect(round(a, 'h2', 'running')).toEqual({ publish: true, movedFrom: 'h1' });
    expect(round(a, 'h2', 'running')).toEqual({ publish: true });
    expect(round(a, 'h1', 'exited')).toEqual({ publish: false });
    // Source's round first: it sees its copy stopped before the target's copy runs.
    const b = new SeriesOwnership();
    round(b, 'h1', 'running');
    expect(round(b, 'h1', 'exited')).toEqual({ publish: true }); // nothing runs elsewhere (yet): a stopped container
    expect(round(b, 'h2', 'running')).toEqual({ publish: true, movedFrom: 'h1' });
    expect(round(b, 'h1', 'exited')).toEqual({ publish: false });
  });

  it('marks no move for a stopped copy seen first (start-up, a prepared target)', () => {
    const o = new SeriesOwnership();
    expect(round(o, 'h2', 'created')).toEqual({ publish: true });
    expect(round(o, 'h1', 'running')).toEqual({ publish: true });
    expect(round(o, 'h2', 'created')).toEqual({ publish: false });
  });

  it('moves the series when the owner\'s host cannot list its containers (it may never answer again)', () => {
    const o = new SeriesOwnership();
    round(o, 'h1', 'running');
    expect(round(o, 'h2', 'running')).toEqual({ publish: false });
    o.unknown('h1');
    expect(round(o, 'h2', 'running')).toEqual({ publish: true, movedFrom: 'h1' });
    expect(round(o, 'h1', 'running')).toEqual({ publish: false }); // h1 answers again: no move back while h2 runs
  });

  it('marks a move back (a rollback) from the host that owned it', () => {
    const o = new SeriesOwnership();
    round(o, 'h1', 'running');
    round(o, 'h1', 'exited');
    expect(round(o, 'h2', 'running')).toEqual({ publish: true, movedFrom: 'h1' });
    round(o, 'h2', 'exited');
    expect(round(o, 'h1', 'running')).toEqual({ publish: true, movedFrom: 'h2' });
  });
});
