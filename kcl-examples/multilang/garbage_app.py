#!/usr/bin/env python3
"""A broken record processor for kcl-multilang's tests: it answers `initialize` properly, then writes text that
is not a protocol message to stdout instead of replying to `processRecords` (and never replies). The daemon must
report the garbage clearly and, after `timeoutInSeconds`, retry the batch on a fresh child."""
import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    if message["action"] == "initialize":
        print(json.dumps({"action": "status", "responseFor": "initialize"}), flush=True)
    else:
        print("Processing records... this line is not JSON", flush=True)
