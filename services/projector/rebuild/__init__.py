"""Rebuild the read models from offset 0 into a new schema, then switch over atomically.

    python -m services.projector.rebuild [--schema NAME] [--switch] [--batch N]

The live projection keeps serving while the rebuild replays the topic into
`NAME` with the projector's own planning and statements, as the projector role
(`FoldingProjector`: batches folded in memory, written every `--batch` records with
the offsets they cover, in `NAME`, so an interrupted rebuild resumes from the last
checkpoint). The history is copied straight into its table, whose indexes and
row-level security (which COPY cannot pass) are made the live ones at the end.
The read-model tables are the public tables the projector may write, copied with
their indexes, row-level security and grants, so a new migration's table is
rebuilt too.

Switch-over is a table swap in one owner transaction: it locks the live
`projector_offsets` (the first thing every projector batch writes, so the live
projector pauses between batches), catches the rebuild up to exactly the live
offsets, moves the live tables to `retired_<stamp>` and the rebuilt ones into
`public`. Why a swap rather than a search_path or a pointer table: the query
service and the projector keep naming tables unqualified and need no change;
readers see the old tables or the new ones, never a mix, because the move is one
commit; statements blocked on the swap's locks re-resolve the names when they
resume (PostgreSQL replans a cached statement whose tables moved), so the live
projector continues into the rebuilt tables from their offsets.

The parts: `schema` (the new schema's tables, indexes and row-level security, and
the swap), `replay` (the topic into a schema, in one process or several),
`operation` (the whole rebuild and the switch-over), `progress` (the bar on stderr),
`manual_gc` (garbage collection by hand while a replay runs) and `__main__` (the
command line above).
"""
