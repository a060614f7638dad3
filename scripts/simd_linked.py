#!/usr/bin/env python3
"""Which SIMD code of the C libraries ended up in a (stripped) bootstrap.

The release binary is stripped, so `nm` shows nothing. Instead, for every SIMD object file that
the build of mozjpeg-sys (libjpeg-turbo) and libwebp-sys left in the target directory, each
function's machine code is looked for in the binary, with the bytes around each relocation
masked (the relocated field, and the opcode bytes before it that the linker may relax, e.g.
mov -> lea for GOTPCRELX): a function counts as linked when its longest unmasked run (at least
24 bytes) is found. Pure Python (ELF64 little-endian: x86_64 and aarch64), no binutils of the target needed.

    scripts/simd_linked.py BOOTSTRAP TARGET_RELEASE_DIR
    e.g. scripts/simd_linked.py bootstrap target/aarch64-unknown-linux-gnu/release

Prints one line per object (linked functions / functions) and a summary per instruction set.
"""

from __future__ import annotations

import re
import struct
import sys
from collections import defaultdict
from pathlib import Path

MIN_RUN = 24
SIMD_NAME = re.compile(r"(sse2|sse41|sse|avx2|neon|jsimd)", re.I)


def sections(elf: bytes):
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    out = []
    for i in range(shnum):
        name, typ, flags, addr, off, size, link, info, align, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", elf, shoff + i * shentsize
        )
        out.append(dict(name=name, type=typ, off=off, size=size, link=link, info=info, entsize=entsize))
    strtab = out[shstrndx]
    for s in out:
        end = elf.index(b"\0", strtab["off"] + s["name"])
        s["name"] = elf[strtab["off"] + s["name"] : end].decode()
    return out


def functions(obj: bytes):
    """(name, code bytes, masked offsets) of every defined function symbol."""
    secs = sections(obj)
    symtab = next((s for s in secs if s["type"] == 2), None)
    if symtab is None:
        return []
    strs = secs[symtab["link"]]
    masked = defaultdict(set)  # section index -> byte offsets patched by relocations
    for s in secs:
        if s["type"] in (4, 9):  # RELA, REL
            step = s["entsize"] or (24 if s["type"] == 4 else 16)
            for k in range(s["size"] // step):
                r_off, = struct.unpack_from("<Q", obj, s["off"] + k * step)
                masked[s["info"]].update(range(r_off - 3, r_off + 8))
    syms = []
    for k in range(symtab["size"] // 24):
        st_name, st_info, _, st_shndx, st_value, st_size = struct.unpack_from(
            "<IBBHQQ", obj, symtab["off"] + k * 24
        )
        typ, bind = st_info & 0xF, st_info >> 4
        # Functions; nasm (libjpeg-turbo's x86 SIMD) emits global NOTYPE symbols of size 0.
        if st_shndx == 0 or st_shndx >= 0xFF00 or not (typ == 2 or (typ == 0 and bind == 1)):
            continue
        syms.append((st_shndx, st_value, st_size, st_name))
    out = []
    for st_shndx, st_value, st_size, st_name in syms:
        sec = secs[st_shndx]
        if st_size == 0:  # up to the next symbol of the section, or its end
            nxt = [v for sh, v, _, _ in syms if sh == st_shndx and v > st_value]
            st_size = (min(nxt) if nxt else sec["size"]) - st_value
        if st_size <= 0:
            continue
        end = obj.index(b"\0", strs["off"] + st_name)
        name = obj[strs["off"] + st_name : end].decode(errors="replace")
        code = obj[sec["off"] + st_value : sec["off"] + st_value + st_size]
        mask = {o - st_value for o in masked[st_shndx] if st_value <= o < st_value + st_size}
        out.append((name, code, mask))
    return out


def longest_run(code: bytes, mask: set[int]) -> bytes:
    best, start = b"", 0
    for i in range(len(code) + 1):
        if i == len(code) or i in mask:
            if i - start > len(best):
                best = code[start:i]
            start = i + 1
    return best


def isa(name: str) -> str:
    n = name.lower()
    for tag in ("avx2", "sse41", "sse2", "neon"):
        if tag in n:
            return tag
    if "-sse" in n:
        return "sse"
    return "dispatch"


def main() -> int:
    binary = Path(sys.argv[1]).read_bytes()
    release = Path(sys.argv[2])
    summary = defaultdict(lambda: [0, 0])
    for lib in ("mozjpeg-sys", "libwebp-sys"):
        objs = sorted(
            p for p in release.glob(f"build/{lib}-*/out/**/*.o") if SIMD_NAME.search(p.name)
        )
        seen = set()
        for p in objs:
            short = re.sub(r"^[0-9a-f]{16}-", "", p.name)
            if short in seen:
                continue
            seen.add(short)
            funcs = functions(p.read_bytes())
            found = 0
            for _, code, mask in funcs:
                run = longest_run(code, mask)
                if len(run) >= MIN_RUN and run in binary:
                    found += 1
            usable = sum(1 for _, c, m in funcs if len(longest_run(c, m)) >= MIN_RUN)
            key = (lib, isa(short))
            summary[key][0] += found
            summary[key][1] += usable
            print(f"{lib:12} {short:32} {found:3}/{usable:<3} functions found")
    print()
    for (lib, tag), (found, usable) in sorted(summary.items()):
        print(f"SUMMARY {lib:12} {tag:9} {found:4}/{usable:<4} functions linked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
