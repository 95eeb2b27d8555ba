#!/usr/bin/env python3
"""Check the README's minimum supported Rust version per feature.

Usage, from the crate's directory (the one with Cargo.toml):

    python3 .ci/msrv.py [README]       check the MSRV table (default README.md)
    python3 .ci/msrv.py --versions     print each direct dependency's version

The check reads the table under the heading `## Minimum supported Rust
version`, whose rows are `| feature | MSRV |`: one row `default features`
and one per feature of Cargo.toml's [features] except `default` and `full`;
rows `full` and `all features` may be added. It fails when the table and
Cargo.toml list different features, or when the table's default-features
row is not Cargo.toml's `rust-version`.

Then it resolves the dependencies the way a user on the crate's
`rust-version` gets them (`cargo --config
'resolver.incompatible-rust-versions="fallback"' generate-lockfile`: the
newest versions whose `rust-version` fits, and the newest of all where none
fits) and, for each row, collects every package the crate depends on with
those features (the default features plus the row's feature, as `cargo add
tower-sse --features F` gives), through normal and build dependencies only,
on the host platform. It prints the highest `rust-version` any of them
declares and fails when one is above the row's promise. Packages that
declare no `rust-version` are not counted.

The dependencies are walked with `cargo tree -e normal,build`, not with
`cargo metadata`'s resolve graph: the latter unifies features with the
crate's dev-dependencies (tokio "full", for one) and so includes packages a
dependent never builds. `cargo metadata` supplies each package's
`rust-version`.

The generated lockfile replaces Cargo.lock while the check runs; the
previous Cargo.lock is put back afterwards (or removed, if there was none),
so do not build in the same directory at the same time.

`--versions` prints `name version` for each direct normal dependency (all
optional ones included) as locked in the current Cargo.lock, for CI's
"versions tested".

Exit status: 0 when all is well, 1 when a check fails, 2 when the script
cannot run (no table, cargo failed).

Python 3.11 or later, standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

HEADING = "## Minimum supported Rust version"
DEFAULT_ROWS = ("default features", "default")
FALLBACK = 'resolver.incompatible-rust-versions="fallback"'
VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}$")


class Unrunnable(Exception):
    """The check cannot run (exit status 2)."""


def version_key(text: str) -> tuple[int, int, int]:
    """`1.75` < `1.88` < `1.100`; `1.75` == `1.75.0`."""
    parts = [int(p) for p in text.strip().split(".")]
    return tuple(parts + [0] * (3 - len(parts)))  # type: ignore[return-value]


def cargo(*args: str, config: str | None = None) -> str:
    command = ["cargo"]
    if config:
        command += ["--config", config]
    command += list(args)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise Unrunnable(f"`{' '.join(command)}` failed:\n{done.stderr.rstrip()}")
    return done.stdout


def host_triple() -> str:
    done = subprocess.run(["rustc", "-vV"], capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith("host:"):
            return line.split(":", 1)[1].strip()
    raise Unrunnable(f"`rustc -vV` printed no host:\n{done.stderr.rstrip()}")


# ---------------------------------------------------------------- the table


def read_table(readme: Path) -> dict[str, str]:
    """The rows under HEADING, feature -> MSRV (backticks stripped)."""
    try:
        lines = readme.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise Unrunnable(f"cannot read {readme}: {error}") from error
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == HEADING)
    except StopIteration:
        raise Unrunnable(f"{readme}: no heading `{HEADING}`") from None

    table: list[list[str]] = []
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if stripped.startswith("#"):
            break
        if stripped.startswith("|"):
            table.append([c.strip().strip("`").strip() for c in stripped.strip("|").split("|")])
        elif table:
            break
    if len(table) < 2 or not all(re.fullmatch(r":?-+:?", c) for c in table[1]):
        raise Unrunnable(
            f"{readme}: no markdown table (header row, `|---|---|` row, then "
            f"`| feature | MSRV |` rows) under `{HEADING}`"
        )

    rows: dict[str, str] = {}
    problems = []
    for cells in table[2:]:
        if len(cells) < 2:
            problems.append(f"row `| {' | '.join(cells)} |` has no MSRV column")
            continue
        feature, msrv = cells[0], cells[1]
        if feature in DEFAULT_ROWS:
            feature = "default features"
        if feature in rows:
            problems.append(f"feature `{feature}` is listed twice")
        elif not VERSION_RE.match(msrv):
            problems.append(f"feature `{feature}`: MSRV `{msrv}` is not a version like 1.75")
        else:
            rows[feature] = msrv
    if problems:
        raise Unrunnable(f"{readme}: " + "; ".join(problems))
    return rows


def check_table(rows: dict[str, str], manifest: dict, readme: Path) -> list[str]:
    """Cargo.toml's features and rust-version against the table's rows."""
    errors = []
    features = set(manifest.get("features", {})) - {"default", "full"}
    listed = set(rows) - {"default features", "full", "all features"}
    if "default features" not in rows:
        errors.append(f"{readme}: the table has no `default features` row")
    for name in sorted(features - listed):
        errors.append(f"{readme}: Cargo.toml has feature `{name}`, the MSRV table does not list it")
    for name in sorted(listed - features):
        errors.append(f"{readme}: the MSRV table lists feature `{name}`, Cargo.toml has none of that name")
    if "full" in rows and "full" not in manifest.get("features", {}):
        errors.append(f"{readme}: the MSRV table lists `full`, Cargo.toml has no such feature")
    declared = manifest.get("package", {}).get("rust-version")
    promised = rows.get("default features")
    if promised is not None and (declared is None or version_key(declared) != version_key(promised)):
        errors.append(
            f"Cargo.toml's rust-version is {declared or 'not set'}, the MSRV table's "
            f"`default features` row says {promised}"
        )
    return errors


# --------------------------------------------------------- the resolution


class LockSwap:
    """Replace the workspace's Cargo.lock for a while, then put it back."""

    def __init__(self) -> None:
        root = cargo("locate-project", "--workspace", "--message-format", "plain").strip()
        self.path = Path(root).parent / "Cargo.lock"
        self.saved: bytes | None = None

    def __enter__(self) -> "LockSwap":
        self.saved = self.path.read_bytes() if self.path.exists() else None
        # Put the lock back on SIGTERM/SIGHUP too (SIGINT raises already).
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, lambda n, _f: sys.exit(128 + n))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.saved is None:
            self.path.unlink(missing_ok=True)
        else:
            self.path.write_bytes(self.saved)


def rust_versions() -> dict[tuple[str, str], str]:
    """(name, version) -> rust-version, for every package in the lock."""
    metadata = json.loads(cargo("metadata", "--format-version", "1", "--locked", "--all-features"))
    return {
        (p["name"], p["version"]): p["rust_version"]
        for p in metadata["packages"]
        if p.get("rust_version")
    }


def reachable(crate: str, features: list[str], host: str) -> set[tuple[str, str]]:
    """(name, version) of every normal or build dependency, direct or not."""
    out = cargo(
        "tree", "--locked", "-e", "normal,build", "--target", host,
        "--prefix", "none", "--format", "{p}", *features,
    )
    found = set()
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].startswith("v") and words[0] != crate:
            found.add((words[0], words[1][1:]))
    return found


def check_resolution(rows: dict[str, str], crate: str, resolver: str) -> list[str]:
    host = host_triple()
    errors = []
    with LockSwap():
        cargo("generate-lockfile", "--quiet", config=f'resolver.incompatible-rust-versions="{resolver}"')
        declared = rust_versions()
        order = ["default features"] + [r for r in rows if r != "default features"]
        width = max(len(r) for r in order)
        print(f"resolver.incompatible-rust-versions = {resolver}, host {host}")
        for row in order:
            if row == "default features":
                features: list[str] = []
            elif row == "all features":
                features = ["--all-features"]
            else:
                features = ["--features", row]
            promised = rows[row]
            found = sorted(
                ((version_key(declared[p]), p, declared[p]) for p in reachable(crate, features, host) if p in declared),
                reverse=True,
            )
            if found:
                _, (name, version), rust = found[0]
                highest = f"{rust} ({name} {version})"
            else:
                highest = "none declared"
            over = [f"{n} {v} needs {r}" for key, (n, v), r in found if key > version_key(promised)]
            verdict = "ok" if not over else "FAIL"
            print(f"  {row:<{width}}  promised {promised:<6}  highest {highest:<32}  {verdict}")
            if over:
                errors.append(
                    f"`{row}` promises Rust {promised}, but " + ", ".join(over)
                    + f" (resolved with incompatible-rust-versions = {resolver})"
                )
    return errors


# -------------------------------------------------------------- versions


def print_versions() -> None:
    try:
        metadata = json.loads(cargo("metadata", "--format-version", "1", "--locked", "--all-features"))
    except Unrunnable as error:
        raise Unrunnable(f"{error}\n(--versions reads the Cargo.lock the tests used; is there one?)") from None
    packages = {p["id"]: p for p in metadata["packages"]}
    root = metadata["resolve"]["root"]
    node = next(n for n in metadata["resolve"]["nodes"] if n["id"] == root)
    lines = set()
    for dep in node["deps"]:
        if any(kind["kind"] is None for kind in dep["dep_kinds"]):
            package = packages[dep["pkg"]]
            lines.add(f"{package['name']} {package['version']}")
    for line in sorted(lines):
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Check the README's MSRV table against the resolved dependencies "
        "(run in the crate's directory).",
    )
    parser.add_argument("readme", nargs="?", default="README.md", help="the README (default README.md)")
    parser.add_argument(
        "--versions", action="store_true",
        help="print `name version` of each direct dependency from the current Cargo.lock, and exit",
    )
    parser.add_argument(
        "--resolver", choices=("fallback", "allow"), default="fallback",
        help="resolver.incompatible-rust-versions for the check (default fallback: "
        "what a user on the crate's rust-version gets; allow: the newest versions)",
    )
    args = parser.parse_args()

    try:
        if args.versions:
            print_versions()
            return 0
        readme = Path(args.readme)
        try:
            manifest = tomllib.loads(Path("Cargo.toml").read_text(encoding="utf-8"))
        except OSError as error:
            raise Unrunnable(f"no Cargo.toml here ({os.getcwd()}): {error}") from error
        rows = read_table(readme)
        errors = check_table(rows, manifest, readme)
        if errors:
            # Without a matching table, a resolution would check the wrong rows.
            for error in errors:
                print(f"error: {error}", file=sys.stderr)
            return 1
        errors = check_resolution(rows, manifest["package"]["name"], args.resolver)
    except Unrunnable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        print(
            f"error: the MSRV table in {args.readme} promises less than the dependencies need; "
            "raise the row, or pin the dependency to a release that fits",
            file=sys.stderr,
        )
        return 1
    print("MSRV table ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
