"""GNU ld linker scripts for a board, and the Cortex-M7 (and Cortex-M4) build flags of the C engine's runtime.

``linker_script(board)`` gives the board's memory as ld regions, so an image that does not fit the
board fails to link ("region `RAM' overflowed by N bytes", plus an ``mcuformer:`` ASSERT message that
names the budget) instead of running happily in QEMU's much larger memories:

- FLASH (rx): the board's internal flash. ``.isr_vector`` first, then ``.text``, ``.rodata``, the
  ARM unwind tables, ``.init_array`` and ``.data``'s load image.
- RAM (rwx): the board's contiguous SRAM (``board.contiguous_sram_bytes or board.sram_bytes``) less the
  stack: ``.data`` and ``.bss`` (NOLOAD: the arena is a zero-initialised array).
- STACK (rw): the top ``MCU_STACK_BYTES`` (default 8192) of that SRAM, section ``.stack``. Being its own
  region, data that would reach into the stack overflow RAM: "region `RAM' overflowed" means that the
  arena, the other static data and the stack together exceed the board's SRAM.
- On a board whose SRAM is split, ``contiguous_sram_bytes < sram_bytes`` (STM32F427: 192 KB + 64 KB CCM),
  RAM is all of the contiguous SRAM and the rest is the CCM: CCM (rw) holds input sections ``.ccm*``
  (NOLOAD) and STACK is the top of the CCM.
- EXTFLASH (r), only where the board has external flash: section ``.extflash`` (input sections
  ``.extflash*``), for weights that do not fit the internal flash:
  ``__attribute__((section(".extflash.<name>")))``. On a board without it, any such input is an error.

Symbols for the runtime (runtime/cortex_m/startup.c, stack.c): ``_sidata`` (.data's load address),
``_sdata _edata _sbss _ebss`` and the stack ``_sstack`` (lowest address) .. ``_estack`` (initial SP).

``emulator=True`` places the regions where QEMU 7.2's mps2-an500 (``-M mps2-an500 -cpu cortex-m7``)
has RAM, with the board's real SIZES; a comment beside each region gives the real address.
mps2-an500 memory map, probed by writing and reading back a word from a tiny program (QEMU 7.2.22):

- RAM: 0x00000000-0x003FFFFF (ZBT SSRAM1, 4 MB; 0x00400000-0x007FFFFF mirrors it), 0x20000000-0x203FFFFF
  (ZBT SSRAM2/3, 4 MB; 0x20400000-0x207FFFFF mirrors it), 0x60000000-0x60FFFFFF (PSRAM, 16 MB).
- Read as zero, writes ignored (no fault): 0x00800000, 0x01000000 (no block RAM on this board, despite
  QEMU's source comment), 0x10000000, 0x1FFFFFFC, 0x20800000, 0x21000000-0x21FFFFFF, 0xA0000000.
- Bus fault (-> HardFault): 0x30000000, 0x61000000, 0x80000000, 0x90000000.

So on the emulator FLASH is at 0x0 (QEMU boots from the vector table there), RAM at 0x20000000, CCM at
the top of the 4 MB SSRAM2/3 (never the mirror, which would alias RAM), and EXTFLASH at 0x60000000,
where all of the 16 MB of QSPI fits (a bigger external flash is cut to 16 MB, and the script says so).
The verification program's test images (input section ``.verify_data``) go to TESTDATA, the top MB of
SSRAM1 (0x00300000), not to FLASH: on a board the input comes from a sensor, so the board's flash holds
exactly what a deployment would (the emulated FLASH region may therefore be at most 3 MB). On the real
chip's script they go to FLASH.
The Cortex-M4 boards (``board.cpu == "cortex-m4"``, or ``cpu=`` given) are emulated on QEMU 7.2's
mps2-an386 (``-M mps2-an386 -cpu cortex-m4``), probed the same way: SSRAM1 at 0x0 (4 MB, mirrored at
0x00400000), SSRAM2/3 at 0x20000000 (4 MB, mirrored at 0x20400000), block RAM at 0x01000000, PSRAM at
0x21000000 (16 MB); 0x60000000 and 0x90000000 are bus faults, 0x10000000 reads as zero. So the script
is the same as for mps2-an500 except EXTFLASH, which goes to 0x21000000.
``emulator=False`` uses the chips' addresses: flash 0x08000000, SRAM 0x20000000 (0x24000000 for the
STM32H743's AXI SRAM), CCM 0x10000000, QSPI 0x90000000.

The stack size can also be set at link time: ``-Wl,--defsym=MCU_STACK_BYTES=<n>`` (a multiple of 8; the
MEMORY lengths are expressions in that symbol, which GNU ld 2.40, the one checked, accepts).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

from mcuformer.errors import ConfigError
from mcuformer.memory.boards import KIB, Board
from mcuformer.utils.io import write_text

MIB = 1024 * KIB

# Compiler and linker flags for the Cortex-M7 build (also in runtime/cortex_m/Makefile.inc; a test
# checks that the two agree). A link command is
#   arm-none-eabi-gcc CORTEX_M7_CFLAGS <sources> CORTEX_M7_LDFLAGS -T <script> CORTEX_M7_LIBS -o prog.elf
# (cortex_m7_build_command builds it). No newlib crt0, stdio, heap or syscalls: -nostartfiles and no
# -lrdimon; --specs=nano.specs supplies libc_nano for memcpy/memset only, and -lgcc the 64-bit division.
CORTEX_M7_CFLAGS = ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-O2",
                    "-ffunction-sections", "-fdata-sections", "-std=c99")
CORTEX_M7_LDFLAGS = ("-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections")
CORTEX_M7_LIBS = ("-lgcc",)
# The Cortex-M4F build (STM32F411RE, STM32L432KC, STM32F427): single-precision FPU; the DSP extension
# (SMLAD) is part of -mcpu=cortex-m4, so the kernels' DSP path is on. Same LDFLAGS and LIBS.
CORTEX_M4_CFLAGS = ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-O2",
                    "-ffunction-sections", "-fdata-sections", "-std=c99")
CORTEX_M_CFLAGS = {"cortex-m7": CORTEX_M7_CFLAGS, "cortex-m4": CORTEX_M4_CFLAGS}

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime" / "cortex_m"
RUNTIME_SOURCES = ("startup.c", "semihost.c", "counter.c", "stack.c")

# How the tests run an image: semihosting console on stdout, main's return value as exit status,
# SysTick counting instructions (1 tick = 40 instructions, measured; see runtime/cortex_m/counter.h).
QEMU_MPS2_AN500_COMMAND = ("qemu-system-arm", "-M", "mps2-an500", "-cpu", "cortex-m7", "-display", "none",
                           "-serial", "null", "-monitor", "none", "-semihosting", "-icount", "shift=0",
                           "-kernel")
# QEMU's Cortex-M4 machine (AN386 FPGA image); same console, exit status and counter as above.
QEMU_MPS2_AN386_COMMAND = ("qemu-system-arm", "-M", "mps2-an386", "-cpu", "cortex-m4", "-display", "none",
                           "-serial", "null", "-monitor", "none", "-semihosting", "-icount", "shift=0",
                           "-kernel")
QEMU_COMMANDS = {"cortex-m7": QEMU_MPS2_AN500_COMMAND, "cortex-m4": QEMU_MPS2_AN386_COMMAND}

DEFAULT_STACK_BYTES = 8192
MIN_STACK_BYTES = 256

# QEMU 7.2 mps2-an500 (see the module docstring for how these were found).
_EMU_FLASH = (0x00000000, 4 * MIB)   # ZBT SSRAM1 (RAM in QEMU; the reset vector table is read at 0x0)
# The verification program's test images (section .verify_data) live in the top MB of SSRAM1, apart from
# the board's FLASH region: on a board they would come from a sensor, so they must not count against
# (or overflow) its flash. The emulated FLASH region may use the 3 MB below.
_EMU_TESTDATA = (0x00300000, 1 * MIB)
EMULATOR_TEST_IMAGE_BYTES = _EMU_TESTDATA[1]  # what the test images may take on the emulated core
_EMU_SRAM = (0x20000000, 4 * MIB)    # ZBT SSRAM2/3
_EMU_EXTFLASH = (0x60000000, 16 * MIB)  # PSRAM
# The emulated machine of each core, and where it has the PSRAM that stands in for QSPI flash
# (mps2-an386 has FLASH and SRAM where mps2-an500 has them; its PSRAM is at 0x21000000).
_EMU_MACHINE = {"cortex-m7": "mps2-an500", "cortex-m4": "mps2-an386"}
_EMU_EXTFLASH_BY_CPU = {"cortex-m7": _EMU_EXTFLASH, "cortex-m4": (0x21000000, 16 * MIB)}
# The chips.
_REAL_FLASH = 0x08000000
_REAL_SRAM = 0x20000000
_REAL_SRAM_BY_BOARD = {"stm32h743": 0x24000000}  # AXI SRAM; 0x20000000 is the H7's 128 KB DTCM
_REAL_CCM = 0x10000000
_REAL_QSPI = 0x90000000


def runtime_sources() -> list[Path]:
    """The runtime's C files (compile them with the program; include path: ``RUNTIME_DIR``)."""
    return [RUNTIME_DIR / name for name in RUNTIME_SOURCES]


def cortex_m7_build_command(sources, script, output, *, cc: str = "arm-none-eabi-gcc", extra_cflags=(),
                            extra_ldflags=(), include_runtime: bool = True, cpu: str = "cortex-m7") -> list[str]:
    """argv that compiles and links ``sources`` (plus the runtime) for the Cortex-M7 (or ``cpu``) with ``script``."""
    if cpu not in CORTEX_M_CFLAGS:
        raise ConfigError(f"cpu {cpu!r}: use {' or '.join(CORTEX_M_CFLAGS)}")
    srcs = [str(s) for s in sources]
    if include_runtime:
        srcs += [str(s) for s in runtime_sources()]
    return [cc, *CORTEX_M_CFLAGS[cpu], *map(str, extra_cflags), f"-I{RUNTIME_DIR}", *srcs, *CORTEX_M7_LDFLAGS,
            *map(str, extra_ldflags), "-T", str(script), *CORTEX_M7_LIBS, "-o", str(output)]


def _size(n: int) -> str:
    if n % MIB == 0:
        return f"{n // MIB}M"
    if n % KIB == 0:
        return f"{n // KIB}K"
    return str(n)


def _kb(n: int) -> str:
    return f"{n / KIB:g} KB"


def _check_stack(stack_bytes) -> int:
    if isinstance(stack_bytes, bool) or not isinstance(stack_bytes, numbers.Integral):
        raise ConfigError(f"stack size must be an integer number of bytes, got {stack_bytes!r}")
    stack_bytes = int(stack_bytes)
    if stack_bytes < MIN_STACK_BYTES or stack_bytes % 8:
        raise ConfigError(f"stack size must be a multiple of 8 bytes and at least {MIN_STACK_BYTES}, "
                          f"got {stack_bytes}")
    return stack_bytes


def linker_script(board: Board, *, stack_bytes: int = DEFAULT_STACK_BYTES, emulator: bool = True,
                  cpu: str | None = None) -> str:
    """The GNU ld script for ``board`` (see the module docstring); ``cpu`` (default: the board's) picks
    the emulated machine."""
    stack_bytes = _check_stack(stack_bytes)
    cpu = cpu or board.cpu
    if cpu not in _EMU_MACHINE:
        raise ConfigError(f"cpu {cpu!r}: use {' or '.join(_EMU_MACHINE)}")
    machine = _EMU_MACHINE[cpu]
    flash = board.flash_bytes
    ram = board.contiguous_sram_bytes or board.sram_bytes
    ccm = max(board.sram_bytes - ram, 0)  # the SRAM beyond the contiguous region: the CCM
    ext = board.external_flash_bytes
    stack_region = "CCM" if ccm else "RAM"
    stack_room = ccm if ccm else ram
    if stack_bytes >= stack_room:
        raise ConfigError(f"board {board.name}: a {stack_bytes}-byte stack does not fit its "
                          f"{_kb(stack_room)} {'CCM' if ccm else 'SRAM'}")
    base_name = board.name.split()[0].lower()
    real_sram = _REAL_SRAM_BY_BOARD.get(base_name, _REAL_SRAM)

    notes = []
    if emulator:
        if flash > _EMU_TESTDATA[0] - _EMU_FLASH[0]:
            raise ConfigError(f"board {board.name}: {_kb(flash)} of flash does not fit QEMU {machine}'s "
                              f"{_kb(_EMU_TESTDATA[0] - _EMU_FLASH[0])} at 0x0 (the MB above holds the test images)")
        if ram + ccm > _EMU_SRAM[1]:
            raise ConfigError(f"board {board.name}: {_kb(ram + ccm)} of SRAM does not fit QEMU {machine}'s "
                              f"{_kb(_EMU_SRAM[1])} at 0x20000000")
        flash_org, ram_org = _EMU_FLASH[0], _EMU_SRAM[0]
        ccm_org = _EMU_SRAM[0] + _EMU_SRAM[1] - ccm  # top of SSRAM2/3, apart from RAM
        ext_org, ext_room = _EMU_EXTFLASH_BY_CPU[cpu]
        ext_len = min(ext, ext_room)
        if ext > ext_len:
            notes.append(f"EXTFLASH: the board has {_kb(ext)} of external flash; QEMU {machine} has only "
                         f"{_kb(ext_len)} of RAM at 0x{ext_org:08X} to stand in for it, so the region is cut "
                         f"to that")
        where = f"QEMU {machine} (emulator=True): the board's sizes at addresses that exist there"
    else:
        flash_org, ram_org, ccm_org, ext_org, ext_len = _REAL_FLASH, real_sram, _REAL_CCM, _REAL_QSPI, ext
        where = "the real chip (emulator=False)"

    def real(addr: int) -> str:
        return f"   /* real chip: 0x{addr:08X} */" if emulator else ""

    lines = [
        f"/* Generated by mcuformer.codegen.linker for board {board.name}: "
        f"{board.description.replace('*/', '* /')}.",
        f" * Addresses for {where}. Do not edit: regenerate. */",
    ]
    lines += [f"/* NOTE {n} */" for n in notes]
    lines += [
        "",
        "ENTRY(Reset_Handler)",
        "",
        "/* The stack's size; -Wl,--defsym=MCU_STACK_BYTES=<n> overrides it. */",
        f"MCU_STACK_BYTES = DEFINED(MCU_STACK_BYTES) ? MCU_STACK_BYTES : {stack_bytes};",
        "",
        "MEMORY",
        "{",
        f"  FLASH (rx)     : ORIGIN = 0x{flash_org:08X}, LENGTH = {_size(flash)}{real(_REAL_FLASH)}",
    ]
    if ccm:
        lines += [
            f"  RAM (rwx)      : ORIGIN = 0x{ram_org:08X}, LENGTH = {_size(ram)}{real(real_sram)}",
            f"  CCM (rw)       : ORIGIN = 0x{ccm_org:08X}, LENGTH = {_size(ccm)} - MCU_STACK_BYTES"
            f"{real(_REAL_CCM)}",
            f"  STACK (rw)     : ORIGIN = 0x{ccm_org:08X} + {_size(ccm)} - MCU_STACK_BYTES, "
            f"LENGTH = MCU_STACK_BYTES   /* the top of the CCM */",
        ]
    else:
        lines += [
            f"  RAM (rwx)      : ORIGIN = 0x{ram_org:08X}, LENGTH = {_size(ram)} - MCU_STACK_BYTES"
            f"{real(real_sram)}",
            f"  STACK (rw)     : ORIGIN = 0x{ram_org:08X} + {_size(ram)} - MCU_STACK_BYTES, "
            f"LENGTH = MCU_STACK_BYTES   /* the top of the SRAM */",
        ]
    if ext:
        comment = ""
        if emulator:
            cut = f"; the board has {_size(ext)}, see NOTE" if ext_len < ext else ""
            comment = f"   /* real chip: 0x{_REAL_QSPI:08X} (QSPI){cut} */"
        lines.append(f"  EXTFLASH (r)   : ORIGIN = 0x{ext_org:08X}, LENGTH = {_size(ext_len)}{comment}")
    if emulator:
        lines.append(f"  TESTDATA (r)   : ORIGIN = 0x{_EMU_TESTDATA[0]:08X}, LENGTH = {_size(_EMU_TESTDATA[1])}"
                     "   /* the emulator only: the verification's test images, not the board's flash */")
    lines += [
        "}",
        "",
        "SECTIONS",
        "{",
        "  .isr_vector :",
        "  {",
        "    . = ALIGN(4);",
        "    KEEP(*(.isr_vector))",
        "  } > FLASH",
        "",
        "  .text :",
        "  {",
        "    . = ALIGN(4);",
        "    *(.text .text.*)",
        "    *(.glue_7) *(.glue_7t) *(.vfp11_veneer) *(.v4_bx)",
        "    KEEP(*(.init)) KEEP(*(.fini))",
        "    . = ALIGN(4);",
        "    _etext = .;",
        "  } > FLASH",
        "",
        "  .rodata :",
        "  {",
        "    . = ALIGN(4);",
        "    *(.rodata .rodata.*)",
        "    . = ALIGN(4);",
        "  } > FLASH",
        "",
        "  .ARM.extab : { *(.ARM.extab* .gnu.linkonce.armextab.*) } > FLASH",
        "  .ARM.exidx :",
        "  {",
        "    __exidx_start = .;",
        "    *(.ARM.exidx* .gnu.linkonce.armexidx.*)",
        "    __exidx_end = .;",
        "  } > FLASH",
        "",
        "  .preinit_array :",
        "  {",
        "    . = ALIGN(4);",
        "    __preinit_array_start = .;",
        "    KEEP(*(.preinit_array*))",
        "    __preinit_array_end = .;",
        "  } > FLASH",
        "  .init_array :",
        "  {",
        "    . = ALIGN(4);",
        "    __init_array_start = .;",
        "    KEEP(*(SORT(.init_array.*)))",
        "    KEEP(*(.init_array*))",
        "    __init_array_end = .;",
        "  } > FLASH",
        "",
    ]
    if ext:
        lines += [
            "  /* Weights that do not fit the internal flash: __attribute__((section(\".extflash.<name>\"))). */",
            "  .extflash :",
            "  {",
            "    . = ALIGN(4);",
            "    *(.extflash .extflash.*)",
            "    . = ALIGN(4);",
            "  } > EXTFLASH",
            "",
        ]
    else:
        lines += [
            "  /* The board has no external flash: any .extflash input is an error (ASSERT below). */",
            "  .extflash : { *(.extflash .extflash.*) } > FLASH",
            "",
        ]
    if emulator:
        lines += [
            "  /* The verification program's test images (section .verify_data): outside the board's flash. */",
            "  .verify_data : { . = ALIGN(4); KEEP(*(.verify_data .verify_data.*)) } > TESTDATA",
            "",
        ]
    else:
        lines += [
            "  /* Test images of a verification program, if one is linked for the chip: they take flash there. */",
            "  .verify_data : { . = ALIGN(4); KEEP(*(.verify_data .verify_data.*)) } > FLASH",
            "",
        ]
    lines += [
        "  .data :",
        "  {",
        "    . = ALIGN(4);",
        "    _sdata = .;",
        "    *(.data .data.*)",
        "    . = ALIGN(4);",
        "    _edata = .;",
        "  } > RAM AT> FLASH",
        "  _sidata = LOADADDR(.data);",
        "",
        "  .bss (NOLOAD) :",
        "  {",
        "    . = ALIGN(4);",
        "    _sbss = .;",
        "    *(.bss .bss.*)",
        "    *(COMMON)",
        "    . = ALIGN(4);",
        "    _ebss = .;",
        "  } > RAM",
        "",
    ]
    if ccm:
        lines += [
            "  .ccm (NOLOAD) :",
            "  {",
            "    . = ALIGN(4);",
            "    *(.ccm .ccm.*)",
            "    . = ALIGN(4);",
            "  } > CCM",
            "",
        ]
    lines += [
        f"  /* The stack: its own region at the top of the {'CCM' if ccm else 'SRAM'}, so that data that reach it",
        f"   * overflow the {stack_region} region. */",
        "  .stack (NOLOAD) :",
        "  {",
        "    _sstack = .;",
        "    . = . + MCU_STACK_BYTES;",
        "    _estack = .;",
        "  } > STACK",
        "",
        "  .ARM.attributes 0 : { *(.ARM.attributes) }",
        "",
        "  ASSERT(MCU_STACK_BYTES % 8 == 0 && MCU_STACK_BYTES >= 256,",
        "         \"mcuformer: MCU_STACK_BYTES must be a multiple of 8 and at least 256\")",
        "  ASSERT(LOADADDR(.data) + SIZEOF(.data) <= ORIGIN(FLASH) + LENGTH(FLASH),",
        f"         \"mcuformer: code, constants and weights exceed the board's {_kb(flash)} internal flash\")",
    ]
    if ccm:
        lines += [
            "  ASSERT(_ebss <= ORIGIN(RAM) + LENGTH(RAM),",
            f"         \"mcuformer: the arena and static data exceed the board's {_kb(ram)} contiguous SRAM\")",
            "  ASSERT(ADDR(.ccm) + SIZEOF(.ccm) <= ORIGIN(STACK),",
            f"         \"mcuformer: the stack plus .ccm data exceed the board's {_kb(ccm)} CCM\")",
        ]
    else:
        lines += [
            "  ASSERT(_ebss <= ORIGIN(STACK),",
            f"         \"mcuformer: the arena plus stack exceed the board's {_kb(ram)} SRAM\")",
        ]
    if not ext:
        lines += [
            "  ASSERT(SIZEOF(.extflash) == 0,",
            f"         \"mcuformer: board {board.name} has no external flash, but the image puts data in .extflash\")",
        ]
    lines += ["}", ""]
    return "\n".join(lines)


def write_linker_script(board: Board, path: str | os.PathLike, **kw) -> Path:
    """Writes ``linker_script(board, **kw)`` to ``path`` atomically; returns the path."""
    return write_text(path, linker_script(board, **kw))
