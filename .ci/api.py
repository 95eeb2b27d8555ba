#!/usr/bin/env python3
"""Check that API.md names every public item rustdoc lists.

Run after `cargo doc --all-features --no-deps`: reads
target/doc/tower_sse/all.html (every public struct, enum, trait, function,
type alias, constant and static) and fails when API.md does not name one
of them in backticks. Methods are not listed by rustdoc's index; API.md
lists them in its tables by hand.
"""

import os
import re
import sys
from pathlib import Path

index = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "doc/tower_sse/all.html"
api = Path("API.md").read_text(encoding="utf-8")
if not index.is_file():
    sys.exit(f"error: {index} is missing: run `cargo doc --all-features --no-deps` first")
items = re.findall(r'<li><a href="([^"]+)">', index.read_text(encoding="utf-8"))
if not items:
    sys.exit(f"error: no items found in {index}")
# Every backticked word in API.md, and each name inside a backticked list.
named = set()
for code in re.findall(r"`([^`]+)`", api):
    named.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code))
missing = []
for href in items:
    name = href.rsplit("/", 1)[-1].split(".")[1]
    if name not in named:
        missing.append(href)
for href in missing:
    print(f"error: API.md does not name {href}")
print(f"{len(items) - len(missing)} of {len(items)} public items named in API.md")
sys.exit(1 if missing else 0)
