"""Time travel over the event store: the state of an org's flags as of any instant, diffs
between instants, and the snapshots that keep those answers fast on a long log."""
