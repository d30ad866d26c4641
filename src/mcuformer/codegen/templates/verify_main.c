/* Verification program written by `mcuformer verify`: runs the engine on the images of
 * verify_data.c and prints, one line each, the int8 logits, the instruction count of each inference
 * (Cortex-M under QEMU -icount shift=0), the horizontal-flip entry point's logit sums for the last
 * image, the arena guard bytes damaged and the stack high-water mark and size. The Python side compares the
 * logits and the sums with the integer reference bit for bit. */
#include <string.h>

#include "mcuformer_model.h"
#include "verify_data.h"

#ifdef MCU_CORTEX_M
#include "counter.h"
#include "semihost.h"
#include "stack.h"
#define PRINT(s) mcu_write(s)
#define PRINT_INT(v) mcu_write_int(v)
#else
#include <stdio.h>
#define PRINT(s) fputs(s, stdout)
#define PRINT_INT(v) printf("%lld", (long long)(v))
#endif

/* static, not on the stack: with 1000 classes these take 4 KB, which is the harness's, not the engine's */
static int8_t logits[MCUFORMER_NUM_CLASSES], again[MCUFORMER_NUM_CLASSES];
static int16_t sums[MCUFORMER_NUM_CLASSES];

int main(void)
{
    int failures = 0;
    mcuformer_guard_fill();
    for (int i = 0; i < VERIFY_NUM_IMAGES; i++) {
        memcpy(mcuformer_input(), verify_images[i], MCUFORMER_INPUT_BYTES);
#ifdef MCU_CORTEX_M
        const uint64_t start = mcu_counter_instructions();
#endif
        const int best = mcuformer_invoke(0, logits);
#ifdef MCU_CORTEX_M
        const uint64_t instructions = mcu_counter_instructions() - start;
        PRINT("instructions ");
        PRINT_INT(i);
        PRINT(" ");
        PRINT_INT((long long)instructions);
        PRINT("\n");
#endif
        PRINT("logits ");
        PRINT_INT(i);
        for (int c = 0; c < MCUFORMER_NUM_CLASSES; c++) {
            PRINT(" ");
            PRINT_INT(logits[c]);
        }
        PRINT("\n");
        PRINT("best ");
        PRINT_INT(i);
        PRINT(" ");
        PRINT_INT(best);
        PRINT("\n");
    }
    /* the copying entry point gives the same logits as the in-arena one */
    mcuformer_invoke(verify_images[VERIFY_NUM_IMAGES - 1], again);
    failures += memcmp(again, logits, MCUFORMER_NUM_CLASSES) != 0;
    PRINT("copy_path ");
    PRINT(failures ? "differs\n" : "same\n");
    /* horizontal-flip test-time augmentation of the last image: the sums of its and its mirror's logits */
    /* it must refuse a null image, and the input buffer, which its first inference would write over */
    const int refused = mcuformer_invoke_hflip(0, sums) == -1 && mcuformer_invoke_hflip(mcuformer_input(), sums) == -1;
    PRINT(refused ? "hflip_refuses_overlap yes\n" : "hflip_refuses_overlap no\n");
#ifdef MCU_CORTEX_M
    const uint64_t flip_start = mcu_counter_instructions();
#endif
    const int flip_best = mcuformer_invoke_hflip(verify_images[VERIFY_NUM_IMAGES - 1], sums);
#ifdef MCU_CORTEX_M
    PRINT("hflip_instructions ");
    PRINT_INT((long long)(mcu_counter_instructions() - flip_start));
    PRINT("\n");
#endif
    PRINT("hflip_sums");
    for (int c = 0; c < MCUFORMER_NUM_CLASSES; c++) {
        PRINT(" ");
        PRINT_INT(sums[c]);
    }
    PRINT("\n");
    PRINT("hflip_best ");
    PRINT_INT(flip_best);
    PRINT("\n");
    const int damaged = mcuformer_guard_damage();
    PRINT("guard_damage ");
    PRINT_INT(damaged);
    PRINT("\n");
#ifdef MCU_CORTEX_M
    PRINT("stack_high_water ");
    PRINT_INT(mcu_stack_high_water());
    PRINT("\n");
    PRINT("stack_size ");
    PRINT_INT(mcu_stack_size());
    PRINT("\n");
#endif
    PRINT("done\n");
    return failures + (damaged != 0);
}
