/* Stack high-water mark by painting.
 *
 * The stack is the region [_sstack, _estack) that the linker script reserves: MCU_STACK_BYTES (default
 * 8192) at the top of RAM, or at the top of CCM on a board whose SRAM is split (STM32F427). Its size is
 * set by linker.py's stack_bytes, or at link time with -Wl,--defsym=MCU_STACK_BYTES=<n> (a multiple of 8);
 * the C code reads the linker symbols, never MCU_STACK_BYTES itself, so a -DMCU_STACK_BYTES=<n> given
 * to the compiler only changes the informational default below.
 *
 * Reset_Handler calls mcu_stack_paint() before anything else runs on the stack below it: every word from
 * _sstack up to (its SP - MCU_STACK_PAINT_MARGIN) is set to MCU_STACK_PAINT. mcu_stack_high_water()
 * scans up from _sstack for the first word that differs and returns _estack minus its address: the bytes
 * ever used, counting the unpainted top (Reset_Handler's frame and the margin) as used. A function that
 * writes the paint pattern itself into its frame can hide up to that much use (one word is enough to stop
 * the scan, so this needs an exact run of pattern words at the lowest address ever reached).
 */
#ifndef MCU_STACK_H
#define MCU_STACK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef MCU_STACK_BYTES
#define MCU_STACK_BYTES 8192u
#endif

#define MCU_STACK_PAINT 0xC5AC5AC5u
#define MCU_STACK_PAINT_MARGIN 32u

/* Paints the free stack below the caller; called once from Reset_Handler. */
void mcu_stack_paint(void);
/* Bytes of the stack region ever used since mcu_stack_paint() (a multiple of 4). */
uint32_t mcu_stack_high_water(void);
/* _estack - _sstack: the stack region's size as linked. */
uint32_t mcu_stack_size(void);

#ifdef __cplusplus
}
#endif

#endif /* MCU_STACK_H */
