#!/usr/bin/env python3
"""Names the stacks of a heapshim dump: `symbolize.py DUMP MAPS CONNECTIONS [TOP]`.
Prints the live bytes of the TOP largest stacks divided by CONNECTIONS, each with its
frames (llvm-symbolizer and swift-demangle from the Swift toolchain)."""
import collections, os, shutil, subprocess, sys

dump, maps_file, connections = sys.argv[1], sys.argv[2], int(sys.argv[3])
top = int(sys.argv[4]) if len(sys.argv) > 4 else 25
tools = os.path.dirname(shutil.which("swift") or "/opt/swift/usr/bin/swift")
maps = []
for line in open(maps_file):
    parts = line.split()
    if len(parts) < 6:
        continue
    lo, hi = [int(x, 16) for x in parts[0].split("-")]
    maps.append((lo, hi, int(parts[2], 16), parts[5]))


def locate(address):
    for lo, hi, offset, path in maps:
        if lo <= address < hi:
            return path, address - lo + offset
    return None, address


lines = open(dump).read().splitlines()
rows = [line.split() for line in lines[1 : top + 1]]
wanted = collections.defaultdict(set)
for row in rows:
    for a in row[2:]:
        path, offset = locate(int(a, 16))
        if path:
            wanted[path].add(offset)
names = {}
for path, offsets in wanted.items():
    offsets = sorted(offsets)
    out = subprocess.run(
        [os.path.join(tools, "llvm-symbolizer"), "--obj=" + path, "--functions=linkage", "--no-inlines",
         "--no-demangle"] + [hex(o) for o in offsets], capture_output=True, text=True).stdout
    for offset, block in zip(offsets, out.strip().split("\n\n")):
        symbol = block.split("\n")[0]
        demangled = subprocess.run([os.path.join(tools, "swift-demangle"), "--simplified", "--compact", symbol],
                                   capture_output=True, text=True).stdout.strip()
        names[(path, offset)] = demangled[:120]
print(f"{lines[0]} bytes live in all; per connection, largest first:")
for row in rows:
    print(f"{int(row[0]) / connections:10.0f} bytes per connection ({row[1]} blocks)")
    for a in row[2:]:
        path, offset = locate(int(a, 16))
        name = names.get((path, offset), hex(int(a, 16)))
        if name and "swift_slowAlloc" not in name and "swift_allocObject" not in name:
            print("      ", name)
