"""The C engine's row kernels other than the matmul, bit for bit against the integer reference
(mcuformer.quantize.intops) on inputs the model tests rarely reach: LayerNorm (mcu_layernorm_row) at the
edges of its 32-bit path (E = 511: the largest E*ss; alternating -128/127: the largest |E x - s|;
gamma = -32768; constant rows: var = 0; beta near +-2^31 and left shifts: the general paths) and over it
(E = 512, 700, 1000: the 64-bit path); the attention rows (mcu_scores_row, mcu_av_row) on odd head widths
(one over the 128 that q's unpacked stack copy holds), token counts and strides, unaligned K and V, and
left shifts (the requantisation's general path); softmax rows (mcu_softmax_row, in place) shorter than
the 4-wide max, with the max in each lane, all negative, and longer than its 256-entry stack cache.

Host (portable C) always; the Cortex-M7 in QEMU (DSP and portable) when the ARM tools are installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernel_harness import (C_OUTPUT, GUARD, c_array, check_outputs, needs_arm, needs_cc, run_cortex_m7, run_host,
                            write_program)

from mcuformer.quantize import intops
from mcuformer.quantize.fixedpoint import quantize_multiplier

MAIN = r"""
#include <stdint.h>
#include <string.h>
#include "mcu_kernels.h"
#include "mcu_attention_row.h"
#include "cases.h"
""" + C_OUTPUT + r"""
static int8_t out_buf[MAX_OUT + 2 * GUARD];
static int8_t in_buf[MAX_IN + 8];

static void report(const int8_t *y, int32_t n)
{
    int bad = 0;
    for (int32_t i = 0; i < GUARD; i++) bad |= out_buf[i] != 0x5a || y[n + i] != 0x5a;
    PUT(bad ? "guard " : "y ");
    put_hex(y, n);
    PUT("\n");
}

int main(void)
{
    int8_t *y = out_buf + GUARD;
    for (int32_t c = 0; c < NUM_LN; c++) {
        const ln_case_t *k = &ln_cases[c];
        const mcu_layernorm_t p = {gamma_pool + k->g, beta_pool + k->g, k->dim, k->multiplier, k->shift, k->out_zp};
        memset(out_buf, 0x5a, sizeof out_buf);
        memcpy(y, x_pool + k->x, (size_t)k->dim);
        if (k->in_place) {
            mcu_layernorm_row(&p, y, y);
        } else {
            memcpy(in_buf + 1, x_pool + k->x, (size_t)k->dim);
            mcu_layernorm_row(&p, in_buf + 1, y);
        }
        report(y, k->dim);
    }
    for (int32_t c = 0; c < NUM_ATT; c++) {
        const att_case_t *k = &att_cases[c];
        mcu_block_t b;
        memset(&b, 0, sizeof b);
        b.tokens = k->tokens;
        b.head_dim = k->hd;
        b.qk_multiplier = k->m;
        b.qk_shift = k->s;
        b.score_zp = k->zp;
        b.av_multiplier = k->m;
        b.av_shift = k->s;
        b.o_zp = k->zp;
        memset(out_buf, 0x5a, sizeof out_buf);
        memcpy(in_buf + k->off, x_pool + k->x, (size_t)(k->tokens * k->stride));
        if (k->av) {
            mcu_av_row(&b, x_pool + k->q, in_buf + k->off, k->stride, y);
            report(y, k->hd);
        } else {
            mcu_scores_row(&b, x_pool + k->q, in_buf + k->off, k->stride, y);
            report(y, k->tokens);
        }
    }
    for (int32_t c = 0; c < NUM_SM; c++) {
        const sm_case_t *k = &sm_cases[c];
        memset(out_buf, 0x5a, sizeof out_buf);
        memcpy(y, x_pool + k->x, (size_t)k->n);
        mcu_softmax_row(y, y, k->n, exp_pool + 256 * k->table); /* in place, as the kernels call it */
        report(y, k->n);
    }
    PUT("done\n");
    return 0;
}
"""

# (dim, kind): kind picks the inputs and constants
LN_CASES = [(8, "random"), (64, "random"), (64, "alternating"), (511, "alternating"), (511, "extreme-gamma"),
            (511, "random"), (3, "constant"), (100, "constant"), (1, "random"), (2, "alternating"),
            (96, "huge-beta"), (40, "left-shift"), (512, "alternating"), (700, "extreme-gamma"), (1000, "random"),
            (192, "in-place")]
# (tokens, head_dim, stride extra, byte offset, av, extreme)
ATT_CASES = [(17, 16, 0, 0, False, False), (17, 16, 0, 0, True, False), (65, 8, 5, 1, False, False),
             (65, 8, 5, 3, True, False), (5, 6, 0, 2, False, False), (5, 6, 0, 2, True, False),
             (1, 4, 0, 0, True, False), (2, 1, 3, 1, False, False), (50, 33, 7, 1, True, False),
             (9, 24, 48, 0, False, True), (9, 24, 48, 0, True, True), (197, 64, 128, 0, True, False),
             (197, 64, 128, 2, False, False), (12, 20, 0, 3, True, False), (5, 130, 2, 1, False, False)]
# softmax rows (n, kind): short rows (no 4-wide max), the max in each lane, rows past the stack cache (256)
SOFTMAX_CASES = [(1, "random"), (3, "random"), (7, "random"), (8, "max-last"), (9, "random"), (65, "random"),
                 (65, "equal"), (33, "negative"), (64, "max-lane-2"), (200, "extremes"), (257, "random"),
                 (300, "extremes")]


def make_cases(seed: int = 0):
    """(cases.h text, the expected int8 outputs per case)"""
    rng = np.random.default_rng(seed)
    gammas, betas, xs, ln_rows, att_rows, expected = [], [], [], [], [], []
    for dim, kind in LN_CASES:
        x = rng.integers(-128, 128, dim)
        gamma = rng.integers(-32768, 32768, dim)
        beta = rng.integers(-200000, 200000, dim)
        real = rng.uniform(0.5, 2.0) / (32768 * 2.0)
        if kind == "alternating":
            x = np.where(np.arange(dim) % 2, 127, -128)
            x[0] = 127  # an odd spread: the largest |E x_i - s| for one element
        if kind == "extreme-gamma":
            x = np.full(dim, -128)
            x[rng.integers(0, dim)] = 127  # one outlier: |d| = 255 (E - 1)
            gamma = np.where(np.arange(dim) % 2, -32768, 32767)
        if kind == "constant":
            x = np.full(dim, int(rng.integers(-128, 128)))
        if kind == "huge-beta":
            beta = rng.integers(-(1 << 31), (1 << 31) - 1, dim)
            edge = (1 << 31) - (1 << 21)  # beyond it q + beta may pass int32
            beta[:8] = [edge - 1, edge, -edge, -edge - 1, (1 << 31) - 1, -(1 << 31), 1 << 30, -(1 << 30)]
            real = 1.0 / (1 << 24)
        m, s = (int(v[0]) for v in quantize_multiplier(real))
        if kind == "left-shift":
            m, s = 1 << 30, 2
            beta = rng.integers(-100, 100, dim)
            gamma = rng.integers(-4, 4, dim)
        zp = int(rng.integers(-10, 10))
        expected.append(intops.layernorm(x, gamma.astype(np.int16), beta, m, s, zp).astype(np.int64))
        ln_rows.append((dim, len(gammas), len(xs), m, s, zp, int(kind == "in-place")))
        gammas.extend(gamma.tolist())
        betas.extend(beta.tolist())
        xs.extend(x.tolist())
    for tokens, hd, extra, off, av, extreme in ATT_CASES:
        stride = hd + extra
        rows = rng.integers(-128, 128, (tokens, stride))
        q = rng.integers(-128, 128, tokens if av else hd)
        if av:  # probabilities
            real = 1.0 / (256 * 128 * np.sqrt(tokens))
        else:
            real = 1.0 / (128 * 128 * np.sqrt(hd) / 20)
        m, s = (int(v[0]) for v in quantize_multiplier(real))
        if extreme:  # a left shift: the requantisation's general path; small sums so that not all saturate
            rows = rng.integers(-3, 4, (tokens, stride))
            q = rng.integers(-128, -124, tokens) if av else rng.integers(-3, 4, hd)
            m, s = int(rng.integers(1 << 30, 1 << 31)), 2
        zp = int(rng.integers(-10, 10))
        if av:
            want = intops.matmul_av(q[None], rows[:, :hd], m, s, zp)[0]
        else:
            want = intops.matmul_qk(q[None], rows[:, :hd], m, s, zp)[0]
        expected.append(want.astype(np.int64))
        att_rows.append((tokens, hd, stride, off, int(av), len(xs) + rows.size, len(xs), m, s, zp))
        xs.extend(rows.reshape(-1).tolist())
        xs.extend(q.tolist())
    tables = [intops.exp_table(scale) for scale in (0.05, 0.4)]
    sm_rows = []
    for n, kind in SOFTMAX_CASES:
        x = rng.integers(-128, 128, n)
        if kind == "max-last":
            x = rng.integers(-128, 100, n)
            x[-1] = 120
        if kind == "max-lane-2":
            x = rng.integers(-128, 0, n)
            x[4 * (n // 8) + 2] = 5
        if kind == "equal":
            x = np.full(n, int(rng.integers(-128, 128)))
        if kind == "negative":
            x = rng.integers(-128, -20, n)
        if kind == "extremes":
            x = np.where(rng.random(n) < 0.5, -128, 127)
        table = len(sm_rows) % 2
        expected.append(intops.softmax(x, tables[table]).astype(np.int64))
        sm_rows.append((n, len(xs), table))
        xs.extend(x.tolist())
    max_out = max([d for d, _ in LN_CASES] + [max(t, hd) for t, hd, *_ in ATT_CASES] + [n for n, _ in SOFTMAX_CASES])
    max_in = max([d for d, _ in LN_CASES] + [t * (hd + e) + o for t, hd, e, o, *_ in ATT_CASES])
    header = ["#include <stdint.h>", "#include \"mcu_kernels.h\"", f"#define NUM_LN {len(LN_CASES)}",
              f"#define NUM_ATT {len(ATT_CASES)}", f"#define MAX_OUT {max_out}", f"#define MAX_IN {max_in}",
              f"#define GUARD {GUARD}",
              "typedef struct { int32_t dim, g, x, multiplier, shift, out_zp, in_place; } ln_case_t;",
              "typedef struct { int32_t tokens, hd, stride, off, av, q, x, m, s, zp; } att_case_t;",
              "typedef struct { int32_t n, x, table; } sm_case_t;", f"#define NUM_SM {len(SOFTMAX_CASES)}",
              c_array("uint16_t", "exp_pool", np.concatenate(tables)),
              c_array("int16_t", "gamma_pool", gammas), c_array("int32_t", "beta_pool", betas),
              c_array("int8_t", "x_pool", xs), "static const ln_case_t ln_cases[NUM_LN] = {"]
    header += ["    {" + ", ".join(map(str, r)) + "}," for r in ln_rows]
    header += ["};", "static const att_case_t att_cases[NUM_ATT] = {"]
    header += ["    {" + ", ".join(map(str, r)) + "}," for r in att_rows]
    header += ["};", "static const sm_case_t sm_cases[NUM_SM] = {"]
    header += ["    {" + ", ".join(map(str, r)) + "}," for r in sm_rows]
    header += ["};"]
    return "\n".join(header) + "\n", expected


def _names() -> list[str]:
    return [f"layernorm E={d} {k}" for d, k in LN_CASES] + [
        f"{'av' if av else 'scores'} N={t} hd={hd} stride+{e} offset {o}{' extreme' if x else ''}"
        for t, hd, e, o, av, x in ATT_CASES] + [f"softmax n={n} {kind}" for n, kind in SOFTMAX_CASES]


def _write_program(tmp: Path) -> tuple[list, list]:
    text, expected = make_cases()
    return write_program(tmp, MAIN, text), expected


def test_cases_reach_the_edges():
    """The LayerNorm cases do reach the 32-bit path's limits (so the C tests below test something):
    E*ss and |gamma * d| + std/2 come within 1 % of 2^32 at E = 511."""
    e = 511
    x = np.full(e, -128)
    x[0] = 127
    d = e * x - x.sum()
    assert 0.99 * 2 ** 32 < e * int((x * x).sum()) < 2 ** 32
    assert 0.99 * 2 ** 32 < 32768 * int(np.abs(d).max()) + 128 * e // 2 < 2 ** 32
    assert 512 * 512 * 128 * 128 >= 2 ** 32  # E = 512 is over: the 64-bit path


@needs_cc
@pytest.mark.parametrize("sanitize", [False, True])
def test_row_kernels_host(tmp_path, sanitize):
    sources, expected = _write_program(tmp_path)
    flags = ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"] if sanitize else ["-O2"]
    check_outputs(run_host(tmp_path, sources, [*flags, "-Werror"]), expected, _names(), "host")


@needs_arm
@pytest.mark.parametrize("path, cflags", [("dsp", ()), ("portable", ("-DMCU_PORTABLE",))])
def test_row_kernels_cortex_m7(tmp_path, path, cflags):
    sources, expected = _write_program(tmp_path)
    check_outputs(run_cortex_m7(tmp_path, sources, path, cflags), expected, _names(), f"Cortex-M7 {path}")
