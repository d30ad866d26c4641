/* Stack painting and high-water mark; see stack.h. */
#include "stack.h"

#include <stddef.h>

extern uint32_t _sstack; /* lowest address of the stack region (linker script) */
extern uint32_t _estack; /* one past its highest address: the initial SP */

__attribute__((noinline)) void mcu_stack_paint(void)
{
    uintptr_t sp;
    volatile uint32_t *p = &_sstack;
    volatile uint32_t *end;
    __asm__ __volatile__("mov %0, sp" : "=r"(sp));
    end = (volatile uint32_t *)((sp - MCU_STACK_PAINT_MARGIN) & ~(uintptr_t)3u);
    /* volatile stores: the compiler may not turn this into a memset() call, whose own frame would sit
     * right below our SP. */
    while (p < end) {
        *p++ = MCU_STACK_PAINT;
    }
}

uint32_t mcu_stack_high_water(void)
{
    const volatile uint32_t *p = &_sstack;
    const volatile uint32_t *top = &_estack;
    while (p < top && *p == MCU_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)top - (uintptr_t)p);
}

uint32_t mcu_stack_size(void)
{
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)&_sstack);
}
