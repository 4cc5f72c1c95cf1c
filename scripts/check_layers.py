#!/usr/bin/env python3
"""Checks that every #include in the library follows the layer order of
docs/design.md ("Layers"): core < exec < bridge < diag < net < http. A file
may include headers of its own layer and of the layers before it, never of a
later one (so the core knows nothing of pools, portals, the watchdog or the
network). Exits 1 and lists every violation.

    scripts/check_layers.py [repo-root]
"""
import pathlib
import re
import sys

ORDER = ["core", "exec", "bridge", "diag", "net", "http"]
RANK = {name: i for i, name in enumerate(ORDER)}

# Public headers outside net/ and http/, by layer (detail/ is core).
HEADERS = {
    "exec": {"thread_pool.hpp", "impl/thread_pool.hpp"},
    "bridge": {"background_loop.hpp", "portal.hpp", "impl/portal.hpp", "loop_group.hpp"},
    "diag": {"watchdog.hpp", "prometheus.hpp"},
}
UMBRELLA = {"spindle.hpp"}  # includes every layer on purpose


def header_layer(rel: str) -> str | None:
    if rel in UMBRELLA:
        return None
    if rel.startswith("net/"):
        return "net"
    if rel.startswith("http/"):
        return "http"
    for layer, names in HEADERS.items():
        if rel in names:
            return layer
    return "core"


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    inc = root / "include" / "spindle"
    files = []  # (path, layer)
    for h in sorted(inc.rglob("*.hpp")):
        layer = header_layer(h.relative_to(inc).as_posix())
        if layer is not None:
            files.append((h, layer))
    for layer in ORDER:
        for f in sorted((root / "src" / layer).rglob("*.[ch]pp")):
            files.append((f, layer))
    include = re.compile(r'^\s*#\s*include\s+"spindle/([^"]+)"', re.M)
    bad = []
    for path, layer in files:
        for target in include.findall(path.read_text()):
            tl = header_layer(target)
            if tl is None:
                bad.append(f"{path.relative_to(root)} ({layer}) includes the umbrella spindle/{target}")
            elif RANK[tl] > RANK[layer]:
                bad.append(f"{path.relative_to(root)} ({layer}) includes spindle/{target} ({tl})")
    for b in bad:
        print("layer violation:", b)
    print(f"check_layers: {len(files)} files, {len(bad)} violations")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
