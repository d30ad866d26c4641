/* Instruction counter from SysTick, for QEMU run with `-icount shift=0`.
 *
 * Under -icount shift=0 QEMU's virtual clock advances exactly 1 ns per executed guest instruction, and
 * SysTick (CLKSOURCE = processor clock: mps2-an500's 25 MHz SYSCLK) decrements once per 40 ns, i.e.
 * once per 40 instructions. MEASURED on QEMU 7.2.22 with an inline-asm loop of N iterations of exactly 4
 * instructions (add, add, subs, bne): N = 5 000 000 (20 000 000 instructions) took 500 001 ticks, and the
 * difference between N = 2 500 000 and N = 5 000 000 was 249 999 ticks for 10 000 000 instructions:
 * 40.000 instructions per tick (within one tick of granularity); tests/test_cortex_m_runtime.py checks it.
 * With a small reload (-DMCU_COUNTER_RELOAD=0xFFF, 183 wraps) the counts agree to within the ~3.5
 * instructions that each SysTick_Handler run adds.
 *
 * The figure is an instruction count, not Cortex-M7 cycles (QEMU models no pipeline, caches or wait
 * states; its DWT cycle counter reads 0). Resolution: one tick, i.e. MCU_COUNTER_INSTRUCTIONS_PER_TICK
 * instructions. On a real chip (no -icount) the same code counts SysTick ticks at the core clock, and
 * mcu_counter_ticks() is then cycles.
 */
#ifndef MCU_COUNTER_H
#define MCU_COUNTER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef MCU_COUNTER_INSTRUCTIONS_PER_TICK
#define MCU_COUNTER_INSTRUCTIONS_PER_TICK 40u
#endif

/* SysTick reload value (24 bits): one interrupt per MCU_COUNTER_RELOAD + 1 ticks. Overridable with -D
 * (the tests use a small one to exercise the overflow path). */
#ifndef MCU_COUNTER_RELOAD
#define MCU_COUNTER_RELOAD 0xFFFFFFu
#endif

/* (Re)starts the counter at zero: SysTick on the processor clock, its interrupt counting wraps.
 * Reset_Handler calls it just before main(). */
void mcu_counter_start(void);
/* SysTick ticks since mcu_counter_start(), 64 bits (wraps after ~23 000 years at 25 MHz). */
uint64_t mcu_counter_ticks(void);
/* mcu_counter_ticks() * MCU_COUNTER_INSTRUCTIONS_PER_TICK. */
uint64_t mcu_counter_instructions(void);
/* Number of SysTick interrupts (wraps) so far; for tests. */
uint32_t mcu_counter_overflows(void);

void SysTick_Handler(void);

#ifdef __cplusplus
}
#endif

#endif /* MCU_COUNTER_H */
