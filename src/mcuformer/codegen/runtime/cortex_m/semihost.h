/* Console output and exit through ARM semihosting (bkpt 0xAB): no newlib stdio, no printf, no heap.
 *
 * Under `qemu-system-arm -semihosting` the text goes to QEMU's stdout and mcu_exit(status) ends QEMU with
 * `status` as its exit status (SYS_EXIT_EXTENDED, which QEMU >= 4.2 implements; an exit status is 8 bits,
 * so the host sees status & 0xFF). Where the host lacks SYS_EXIT_EXTENDED (the ":semihosting-features"
 * file says so, or cannot be opened) mcu_exit falls back to SYS_EXIT, which tells the host only
 * "success" (status 0) or "failure" (anything else: QEMU then exits with 1).
 *
 * On a real board the calls need an attached debugger with semihosting enabled: without one, bkpt
 * escalates to a HardFault.
 */
#ifndef MCU_SEMIHOST_H
#define MCU_SEMIHOST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes a NUL-terminated string to the host console (SYS_WRITE to ":tt": QEMU's stdout); nothing is
 * appended. */
void mcu_write(const char *s);
/* Decimal, with a leading '-' for negative values; the full range of long long. */
void mcu_write_int(long long value);
void mcu_write_uint(unsigned long long value);
/* "0x" and exactly 8 lowercase hex digits. */
void mcu_write_hex32(uint32_t value);
/* Ends the program: QEMU exits with `status` (& 0xFF), see above. */
void mcu_exit(int status) __attribute__((noreturn));

#ifdef __cplusplus
}
#endif

#endif /* MCU_SEMIHOST_H */
