/* ARM semihosting: console output and exit. See semihost.h. */
#include "semihost.h"

#include <stddef.h>

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_EXIT = 0x18,
    SYS_EXIT_EXTENDED = 0x20,
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define ADP_STOPPED_RUNTIME_ERROR_UNKNOWN 0x20023u

static int semihost_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ __volatile__("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* The console handle: ":tt" opened for writing ("w", mode 4) is the host's stdout (semihosting v2,
 * SH_EXT_STDOUT_STDERR; QEMU >= 4.2). SYS_WRITE0 would be simpler, but QEMU 7.2 without a semihosting
 * chardev sends SYS_WRITE0/SYS_WRITEC text to its *stderr* (checked). Opened on first use; 0: not yet,
 * 1: open (g_console_fd), -1: the open failed, use SYS_WRITE0. */
static int g_console_state;
static int g_console_fd;

static int console_fd(void)
{
    if (g_console_state == 0) {
        static const char tt[] = ":tt";
        uint32_t args[3];
        args[0] = (uint32_t)(uintptr_t)tt;
        args[1] = 4u; /* "w" */
        args[2] = (uint32_t)(sizeof tt - 1u);
        g_console_fd = semihost_call(SYS_OPEN, args);
        g_console_state = g_console_fd == -1 ? -1 : 1;
    }
    return g_console_state == 1 ? g_console_fd : -1;
}

void mcu_write(const char *s)
{
    uint32_t len = 0u;
    int fd;
    if (s == NULL) {
        return;
    }
    while (s[len] != '\0') {
        ++len;
    }
    if (len == 0u) {
        return;
    }
    fd = console_fd();
    if (fd != -1) {
        uint32_t args[3];
        args[0] = (uint32_t)fd;
        args[1] = (uint32_t)(uintptr_t)s;
        args[2] = len;
        semihost_call(SYS_WRITE, args); /* returns the number of bytes not written */
    } else {
        semihost_call(SYS_WRITE0, s);
    }
}

void mcu_write_uint(unsigned long long value)
{
    char buf[24]; /* 2^64 - 1 has 20 digits */
    char *p = buf + sizeof buf - 1;
    *p = '\0';
    do {
        /* 64-bit division by a constant: gcc turns it into multiplications (or __aeabi_uldivmod, in libgcc). */
        *--p = (char)('0' + (unsigned)(value % 10u));
        value /= 10u;
    } while (value != 0u);
    mcu_write(p);
}

void mcu_write_int(long long value)
{
    if (value < 0) {
        mcu_write("-");
        /* Negate in unsigned arithmetic: -LLONG_MIN overflows a long long. */
        mcu_write_uint(0ull - (unsigned long long)value);
    } else {
        mcu_write_uint((unsigned long long)value);
    }
}

void mcu_write_hex32(uint32_t value)
{
    static const char digits[] = "0123456789abcdef";
    char buf[11];
    int i;
    buf[0] = '0';
    buf[1] = 'x';
    for (i = 0; i < 8; ++i) {
        buf[2 + i] = digits[(value >> (28 - 4 * i)) & 0xFu];
    }
    buf[10] = '\0';
    mcu_write(buf);
}

/* Does the host implement SYS_EXIT_EXTENDED? Semihosting v2 answers through the magic file
 * ":semihosting-features": the bytes 'S','H','F','B' and then feature byte 0, whose bit 0 is
 * SH_EXT_EXIT_EXTENDED. A host without the file (semihosting v1) fails the open. */
static int host_has_exit_extended(void)
{
    static const char name[] = ":semihosting-features";
    uint32_t open_args[3];
    uint32_t read_args[3];
    unsigned char magic[5] = {0, 0, 0, 0, 0};
    int fd;
    int unread;

    open_args[0] = (uint32_t)(uintptr_t)name;
    open_args[1] = 1u; /* mode "rb" */
    open_args[2] = (uint32_t)(sizeof name - 1u);
    fd = semihost_call(SYS_OPEN, open_args);
    if (fd == -1) {
        return 0;
    }
    read_args[0] = (uint32_t)fd;
    read_args[1] = (uint32_t)(uintptr_t)magic;
    read_args[2] = (uint32_t)sizeof magic;
    unread = semihost_call(SYS_READ, read_args); /* returns the number of bytes NOT read */
    semihost_call(SYS_CLOSE, read_args);         /* the handle is the first word of both blocks */
    return unread == 0 && magic[0] == 'S' && magic[1] == 'H' && magic[2] == 'F' && magic[3] == 'B'
           && (magic[4] & 1u) != 0u;
}

void mcu_exit(int status)
{
    if (host_has_exit_extended()) {
        uint32_t block[2];
        block[0] = ADP_STOPPED_APPLICATION_EXIT;
        block[1] = (uint32_t)status;
        semihost_call(SYS_EXIT_EXTENDED, block);
    } else {
        /* A32/T32 SYS_EXIT takes the reason code itself (not a block): success or failure only. */
        semihost_call(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                                        : ADP_STOPPED_RUNTIME_ERROR_UNKNOWN));
    }
    for (;;) {
        /* Not reached under a semihosting host; never return where there is none. */
    }
}
