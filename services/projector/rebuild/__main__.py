"""`python -m services.projector.rebuild`: rebuild the read models (the package's docstring says how)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
from collections.abc import Sequence

import services.projector.rebuild as package
from services.infra.settings import Settings
from services.projector.rebuild.manual_gc import GC_THRESHOLDS
from services.projector.rebuild.operation import rebuild
from services.projector.rebuild.replay import CHECKPOINT


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m services.projector.rebuild", description=(package.__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--schema", default="rebuild", help="the new schema (resumes it when it exists)")
    parser.add_argument("--switch", action="store_true", help="make the rebuilt read models live when done")
    parser.add_argument("--batch", type=int, default=CHECKPOINT, help="records per transaction (checkpoint)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes, each some partitions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("services.projector.projection").setLevel(logging.WARNING)
    gc.set_threshold(*GC_THRESHOLDS)
    retired = asyncio.run(rebuild(Settings(), args.schema, switch=args.switch, batch=args.batch, workers=args.workers))
    if retired:
        print(f"switched over; the previous read models are in schema {retired}")


if __name__ == "__main__":
    main()
