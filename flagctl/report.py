"""How flagctl prints the outcome of a change: the events it wrote, or that nothing changed."""

from __future__ import annotations

import argparse
import json
from typing import Any


def report_change(result: dict[str, Any], args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps(result))
    elif not result.get("changed"):
        print(f"unchanged: {result.get('stream')} stays at version {result.get('version')}")
    else:
        for event in result.get("events", []):
            print(f"{event['type']}  {event['stream']}  v{event['version']}  {event['previous']} -> {event['new']}")
    return 0
