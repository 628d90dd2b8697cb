"""Checks a built wheel: an abi3 manylinux2014 (glibc 2.17) tag, an extension module that needs
no glibc symbol newer than 2.17, and no debug information (the wheel is stripped)."""

import re
import struct
import sys
import zipfile

path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    wheel = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
    tags = [line.split(":", 1)[1].strip() for line in z.read(wheel).decode().splitlines() if line.startswith("Tag:")]
    so_name = next(n for n in z.namelist() if n.endswith(".so"))
    so = z.read(so_name)
fail = []
if not any(t.startswith("cp39-abi3-manylinux2014_x86_64") or t == "cp39-abi3-manylinux_2_17_x86_64" for t in tags):
    fail.append(f"tags {tags}: expected cp39-abi3-manylinux2014_x86_64")
versions = sorted({tuple(map(int, v.split("."))) for v in re.findall(rb"GLIBC_(\d+\.\d+)", so) for v in [v.decode()]})
if versions and versions[-1] > (2, 17):
    fail.append(f"{so_name} needs GLIBC_{'.'.join(map(str, versions[-1]))} (> 2.17)")
# ELF64 little-endian section headers: names of the sections, looking for .debug_*.
shoff, = struct.unpack_from("<Q", so, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", so, 0x3A)
def section(i):
    return struct.unpack_from("<IIQQQQ", so, shoff + i * shentsize)
_, _, _, _, str_off, str_size = section(shstrndx)
names = []
for i in range(shnum):
    name_off = section(i)[0]
    end = so.index(b"\0", str_off + name_off)
    names.append(so[str_off + name_off:end].decode())
debug = [n for n in names if n.startswith(".debug")]
if debug:
    fail.append(f"{so_name} carries debug sections {debug}: build with --strip")
print(f"{path}: tags {tags}; {so_name} {len(so) / 1e6:.1f} MB, glibc <= {'.'.join(map(str, versions[-1])) if versions else '?'}, "
      f"{len(names)} sections, {len(debug)} of them .debug")
if fail:
    sys.exit("wheel check failed: " + "; ".join(fail))
