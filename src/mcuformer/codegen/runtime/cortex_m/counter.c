/* SysTick instruction counter; see counter.h. */
#include "counter.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_SHPR3 (*(volatile uint32_t *)0xE000ED20u)

#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1: processor clock; 0: external reference clock (1 MHz on mps2) */

#if (MCU_COUNTER_RELOAD) < 1u || (MCU_COUNTER_RELOAD) > 0xFFFFFFu
#error "MCU_COUNTER_RELOAD must be in 1 .. 0xFFFFFF"
#endif

static volatile uint32_t g_overflows;

void SysTick_Handler(void)
{
    g_overflows = g_overflows + 1u;
}

void mcu_counter_start(void)
{
    SYST_CSR = 0u;
    SYST_RVR = MCU_COUNTER_RELOAD;
    SYST_CVR = 0u; /* any write clears the counter (and COUNTFLAG); it loads RVR on the next tick */
    g_overflows = 0u;
    SCB_SHPR3 &= 0x00FFFFFFu; /* SysTick at the highest configurable priority */
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

uint64_t mcu_counter_ticks(void)
{
    uint32_t before;
    uint32_t value;
    uint32_t after;
    /* A wrap between the two reads of the overflow count (its interrupt is taken at once: nothing masks
     * it) makes them differ; read again. */
    do {
        before = g_overflows;
        value = SYST_CVR;
        after = g_overflows;
    } while (before != after);
    /* After mcu_counter_start() the counter reads 0 until the first tick loads RVR; it then runs
     * RVR, RVR - 1, ..., 1, 0 (the wrap: the interrupt fires as it reaches 0), RVR, ...: a period of RVR + 1
     * ticks, and at a reading v != 0 the current period has run RVR + 1 - v ticks, at v == 0 none (the
     * wrap that just happened is in the overflow count). */
    return (uint64_t)before * ((uint64_t)MCU_COUNTER_RELOAD + 1u)
           + (value != 0u ? (uint64_t)(MCU_COUNTER_RELOAD + 1u - value) : 0u);
}

uint64_t mcu_counter_instructions(void)
{
    return mcu_counter_ticks() * (uint64_t)MCU_COUNTER_INSTRUCTIONS_PER_TICK;
}

uint32_t mcu_counter_overflows(void)
{
    return g_overflows;
}
