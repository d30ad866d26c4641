/* The conv stem's 3x3 max-pool, stride 2, padding 1 (padded pixels never win), one output row from
 * the three input rows of its window. With the DSP extension four channels at a time: SSUB8 sets a
 * GE flag per byte where a >= b and SEL takes those bytes of a, the rest of b (the same bytes as the
 * portable comparison). */
#include <string.h>

#include "mcu_kernels.h"
#include "mcu_dot.h"

#ifdef MCU_DSP
static inline int32_t max_s8x4(int32_t a, int32_t b)
{
    int32_t diff, r;
    __asm__("ssub8 %0, %2, %3\n\tsel %1, %2, %3" : "=&r"(diff), "=&r"(r) : "r"(a), "r"(b) : "cc");
    (void)diff;
    return r;
}
#endif

/* dst[i] = max(dst[i], src[i]) */
static void max_into(int8_t *dst, const int8_t *src, int32_t n)
{
    int32_t i = 0;
#ifdef MCU_DSP
    for (; i + 4 <= n; i += 4) {
        const int32_t m = max_s8x4(mcu_read_s8x4(dst + i), mcu_read_s8x4(src + i));
        memcpy(dst + i, &m, 4);
    }
#endif
    for (; i < n; i++) dst[i] = src[i] > dst[i] ? src[i] : dst[i];
}

void mcu_maxpool3x3s2_row(const int8_t *above, const int8_t *mid, const int8_t *below, int8_t *out,
                          int32_t in_width, int32_t channels)
{
    const int8_t *const rows[3] = {above, mid, below};
    const int32_t out_width = (in_width + 1) / 2;
    for (int32_t x = 0; x < out_width; x++) {
        const int32_t x0 = x == 0 ? 0 : 2 * x - 1, x1 = 2 * x + 1 < in_width ? 2 * x + 1 : in_width - 1;
        int8_t *dst = out + x * channels;
        memcpy(dst, mid + 2 * x * channels, (size_t)channels); /* the centre is always inside */
        for (int32_t ky = 0; ky < 3; ky++)
            if (rows[ky])
                for (int32_t xx = x0; xx <= x1; xx++) max_into(dst, rows[ky] + xx * channels, channels);
    }
}
