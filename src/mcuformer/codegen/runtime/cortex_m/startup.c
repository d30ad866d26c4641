/* Cortex-M7 (also M4) startup: vector table, Reset_Handler and fault handlers, in C99 with GNU attributes.
 *
 * Reset_Handler: enable the FPU (CPACR: full access to CP10/CP11; first, since the code is built with
 * -mfloat-abi=hard), copy .data from flash, zero .bss, paint the stack (stack.c), run .init_array
 * (normally empty in C), start the SysTick instruction counter (counter.c), call int main(void) and end
 * with mcu_exit(main's return value) (semihost.c): QEMU exits with that status (& 0xFF).
 *
 * Faults (NMI, HardFault, MemManage, BusFault, UsageFault) print one line via semihosting, e.g.
 *   mcuformer: HardFault at pc=0x000000cc (CFSR=0x00008200 HFSR=0x40000000 MMFAR=0x00000000 BFAR=0x90000000)
 * (a read of 0x90000000, unmapped on QEMU's mps2-an500: a precise BusFault escalated to HardFault)
 * and exit with status MCU_FAULT_EXIT_BASE + the exception number (NMI 102, HardFault 103, MemManage 104,
 * BusFault 105, UsageFault 106); any other unexpected exception (SVC, PendSV, DebugMon, an IRQ) does the
 * same with its number. Every handler is weak: a program may define its own.
 *
 * Linked with -nostartfiles --specs=nano.specs -lgcc: no newlib crt0, stdio, heap or syscalls; libc only
 * provides memcpy/memset. The linker script (linker.py) defines the symbols used below.
 */
#include <stdint.h>

#include "counter.h"
#include "semihost.h"
#include "stack.h"

#define MCU_FAULT_EXIT_BASE 100
#define MCU_NUM_IRQS 32 /* external interrupts in the table; this runtime enables none */

extern uint32_t _sidata; /* .data's load address in flash */
extern uint32_t _sdata;
extern uint32_t _edata;
extern uint32_t _sbss;
extern uint32_t _ebss;
extern uint32_t _estack;
typedef void (*mcu_init_fn)(void);
extern mcu_init_fn __preinit_array_start[];
extern mcu_init_fn __preinit_array_end[];
extern mcu_init_fn __init_array_start[];
extern mcu_init_fn __init_array_end[];

int main(void);

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
/* SysTick_Handler is counter.c's (the instruction counter's overflow count). */

typedef union {
    void (*handler)(void);
    const void *stack_top;
} mcu_vector;

__attribute__((section(".isr_vector"), used)) const mcu_vector g_mcu_vectors[16 + MCU_NUM_IRQS] = {
    {.stack_top = &_estack},
    {.handler = Reset_Handler},
    {.handler = NMI_Handler},
    {.handler = HardFault_Handler},
    {.handler = MemManage_Handler},
    {.handler = BusFault_Handler},
    {.handler = UsageFault_Handler},
    {.handler = 0},
    {.handler = 0},
    {.handler = 0},
    {.handler = 0},
    {.handler = SVC_Handler},
    {.handler = DebugMon_Handler},
    {.handler = 0},
    {.handler = PendSV_Handler},
    {.handler = SysTick_Handler},
    /* 16 + n: IRQ n. Filled below (designated initialisers cannot give a range in C99). */
#define MCU_IRQ4 {.handler = Default_Handler}, {.handler = Default_Handler}, \
                 {.handler = Default_Handler}, {.handler = Default_Handler}
    MCU_IRQ4, MCU_IRQ4, MCU_IRQ4, MCU_IRQ4, MCU_IRQ4, MCU_IRQ4, MCU_IRQ4, MCU_IRQ4,
#undef MCU_IRQ4
};

#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_MMFAR (*(volatile uint32_t *)0xE000ED34u)
#define SCB_BFAR (*(volatile uint32_t *)0xE000ED38u)

void Reset_Handler(void)
{
    uint32_t *src;
    uint32_t *dst;
    mcu_init_fn *fn;

    SCB_CPACR |= (0xFu << 20); /* CP10, CP11: full access */
    __asm__ __volatile__("dsb\n\tisb" ::: "memory");
    SCB_VTOR = (uint32_t)(uintptr_t)g_mcu_vectors;

    src = &_sidata;
    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    mcu_stack_paint();
    for (fn = __preinit_array_start; fn < __preinit_array_end; ++fn) {
        (*fn)();
    }
    for (fn = __init_array_start; fn < __init_array_end; ++fn) {
        (*fn)();
    }
    mcu_counter_start();
    mcu_exit(main());
}

static const char *exception_name(uint32_t number)
{
    switch (number) {
    case 2: return "NMI";
    case 3: return "HardFault";
    case 4: return "MemManage";
    case 5: return "BusFault";
    case 6: return "UsageFault";
    case 11: return "SVC";
    case 12: return "DebugMon";
    case 14: return "PendSV";
    case 15: return "SysTick";
    default: return number >= 16u ? "IRQ" : "reserved exception";
    }
}

/* frame: the exception's stacked r0-r3, r12, lr, pc, xpsr (on whichever stack was in use). */
void mcu_fault_report(const uint32_t *frame) __attribute__((noreturn, used));
void mcu_fault_report(const uint32_t *frame)
{
    uint32_t ipsr;
    uint32_t number;
    __asm__ __volatile__("mrs %0, ipsr" : "=r"(ipsr));
    number = ipsr & 0x1FFu;
    mcu_write("mcuformer: ");
    mcu_write(exception_name(number));
    if (number >= 16u) {
        mcu_write(" ");
        mcu_write_uint(number - 16u);
    }
    mcu_write(" at pc=");
    mcu_write_hex32(frame[6]);
    mcu_write(" (CFSR=");
    mcu_write_hex32(SCB_CFSR);
    mcu_write(" HFSR=");
    mcu_write_hex32(SCB_HFSR);
    mcu_write(" MMFAR=");
    mcu_write_hex32(SCB_MMFAR);
    mcu_write(" BFAR=");
    mcu_write_hex32(SCB_BFAR);
    mcu_write(")\n");
    mcu_exit(MCU_FAULT_EXIT_BASE + (int)number);
}

/* Hands the stacked frame to mcu_fault_report: bit 2 of EXC_RETURN (lr) says which stack holds it. */
__attribute__((naked)) void Default_Handler(void)
{
    __asm__ __volatile__(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "b mcu_fault_report\n\t");
}
