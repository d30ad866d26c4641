"""C source of one quantised model: its constants as ``const`` arrays (flash), one parameter struct per
section (stem, each block, head), and ``mcuformer_invoke``: the memory model's op list as a straight
list of kernel calls on arena offsets from the planner (TinyEngine's genModel shape: one arena, one
``MCUFORMER_ARENA_BYTES``).

Nothing here decides a schedule or an offset: ``build_ops`` and ``plan_arena`` do, so the engine runs
exactly what the search costed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mcuformer.memory.ops import Op
from mcuformer.memory.planner import ArenaPlan
from mcuformer.quantize.model import QuantModel, conv_stem_tensor
from mcuformer.space import patch_grid, patch_padding

GUARD_PATTERN_NOTE = "guard byte i holds (uint8_t)(0xA5 ^ (i * 37))"
C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t", "int32": "int32_t"}


def c_name(param: str) -> str:
    """``blocks.0.attn.qkv.up.weight`` -> ``blocks_0_attn_qkv_up_weight``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", param)


@dataclass
class GeneratedModel:
    header: str
    source: str
    weights: str
    weights_header: str
    arena_bytes: int
    macs: int
    num_calls: int


class _Writer:
    def __init__(self, q: QuantModel, ops: list[Op], plan: ArenaPlan):
        self.q, self.ops, self.plan, self.arch = q, ops, plan, q.arch

    # ------------------------------------------------------------ scalars of the quantised model

    def zp(self, tensor: str) -> int:
        return int(self.q.act[tensor][1])

    def has(self, name: str) -> bool:
        return f"{name}.weight" in self.q.params

    def factor(self, name: str) -> str:
        w = self.q.params[f"{name}.weight"]
        n = c_name(name)
        return (f"{{.weight = {n}_weight, .bias = {n}_bias, .multiplier = {n}_multiplier, .shift = {n}_shift, "
                f".in = {w.shape[1]}, .out = {w.shape[0]}, .out_zp = {int(self.q.consts[name]['zero_point'])}}}")

    def linear(self, name: str) -> str:
        if self.has(f"{name}.down"):
            return f"{{.down = {self.factor(f'{name}.down')},\n        .up = {self.factor(f'{name}.up')}}}"
        return f"{{.down = {{0}}, .up = {self.factor(name)}}}"

    def norm(self, name: str, out: str) -> str:
        c, n = self.q.consts[name], c_name(name)
        dim = self.q.params[f"{name}.weight"].shape[0]
        return (f"{{.gamma = {n}_weight, .beta = {n}_bias, .dim = {dim}, .multiplier = {int(c['multiplier'])}, "
                f".shift = {int(c['shift'])}, .out_zp = {self.zp(out)}}}")

    def add(self, name: str, a: str, b: str, out: str) -> str:
        c = self.q.consts[name]
        return (f"{{.a_zp = {self.zp(a)}, .a_multiplier = {int(c['m1'])}, .a_shift = {int(c['s1'])}, "
                f".b_zp = {self.zp(b)}, .b_multiplier = {int(c['m2'])}, .b_shift = {int(c['s2'])}, "
                f".out_multiplier = {int(c['mo'])}, .out_shift = {int(c['so'])}, .out_zp = {self.zp(out)}}}")

    # ------------------------------------------------------------ section structs

    def stem(self) -> str:
        a = self.arch
        cls = "cls_token" if a.cls_token else "0"
        if a.stem == "conv":
            return self.conv_stem(cls)
        return (f"static const mcu_stem_t stem = {{\n"
                f"    .proj = {self.factor('patch_embed.proj')},\n"
                f"    .cls_token = {cls}, .pos_embed = pos_embed,\n"
                f"    .pos_add = {self.add('stem.pos_add', 'stem.patches', 'stem.pos_embed', 'stem.x')},\n"
                f"    .img_size = {a.img_size}, .channels = {a.in_chans}, .patch = {a.patch_size}, "
                f".grid = {patch_grid(a.img_size, a.patch_size)}, .pad = {patch_padding(a.img_size, a.patch_size)[0]}}};\n")

    def conv_stem(self, cls: str) -> str:
        a = self.arch
        convs, stages = [], []
        for i, (size, cin, cout, pooled) in enumerate(a.stem_convs()):
            inp = "image" if i == 0 else conv_stem_tensor(a, i - 1)
            convs.append(f"{{.f = {self.factor(f'stem.conv{i}')}, .in_zp = {self.zp(inp)}, .width = {size}, "
                         f".in_chans = {cin}}}")
            stages.append(f"{{.kind = 0, .layer = {i}, .in_size = {size}, .out_size = {size}, .channels = {cout}}}")
            if pooled:
                stages.append(f"{{.kind = 1, .layer = {i}, .in_size = {size}, .out_size = {(size - 1) // 2 + 1}, "
                              f".channels = {cout}}}")
        return (f"static const mcu_conv_stem_t stem = {{\n"
                f"    .conv = {{{', '.join(convs)}}},\n"
                f"    .stage = {{{', '.join(stages)}}}, .stages = {len(stages)},\n"
                f"    .cls_token = {cls}, .pos_embed = pos_embed,\n"
                f"    .pos_add = {self.add('stem.pos_add', 'stem.patches', 'stem.pos_embed', 'stem.x')},\n"
                f"    .grid = {a.grid}, .dim = {a.embed_dim}}};\n")

    def block(self, i: int) -> str:
        a, p = self.arch, f"blocks.{i}"
        prev = "stem.x" if i == 0 else f"blocks.{i - 1}.out"
        qk, av = self.q.consts[f"{p}.attn.qk"], self.q.consts[f"{p}.attn.av"]
        fc1 = self.q.params[f"{p}.mlp.fc1.up.weight" if self.has(f"{p}.mlp.fc1.up") else f"{p}.mlp.fc1.weight"]
        n = c_name(p)
        return (f"static const mcu_block_t {n} = {{\n"
                f"    .norm1 = {self.norm(f'{p}.norm1', f'{p}.norm1.out')},\n"
                f"    .qkv = {self.linear(f'{p}.attn.qkv')},\n"
                f"    .tokens = {a.num_tokens}, .dim = {a.embed_dim}, .heads = {a.num_heads[i]}, "
                f".head_dim = {a.head_dim},\n"
                f"    .qk_multiplier = {int(qk['multiplier'])}, .qk_shift = {int(qk['shift'])}, "
                f".score_zp = {self.zp(f'{p}.attn.scores')}, .exp_lut = {n}_attn_exp_lut,\n"
                f"    .av_multiplier = {int(av['multiplier'])}, .av_shift = {int(av['shift'])}, "
                f".o_zp = {self.zp(f'{p}.attn.o')},\n"
                f"    .proj = {self.linear(f'{p}.attn.proj')},\n"
                f"    .add1 = {self.add(f'{p}.add1', prev, f'{p}.attn.proj.out', f'{p}.x1')},\n"
                f"    .norm2 = {self.norm(f'{p}.norm2', f'{p}.norm2.out')},\n"
                f"    .fc1 = {self.linear(f'{p}.mlp.fc1')},\n"
                f"    .gelu_lut = {n}_mlp_gelu_lut,\n"
                f"    .fc2 = {self.linear(f'{p}.mlp.fc2')},\n"
                f"    .add2 = {self.add(f'{p}.add2', f'{p}.x1', f'{p}.mlp.fc2.out', f'{p}.out')},\n"
                f"    .hidden = {fc1.shape[0]}{self.rel_pos(p)}}};\n")

    def rel_pos(self, p: str) -> str:
        """The relative position members of block p's struct: its tables and the index rule."""
        a = self.arch
        if not a.rel_pos:
            return ""
        n = c_name(f"{p}.attn.rel_pos")
        side = math.isqrt(a.num_tokens - int(a.cls_token))
        return (f",\n    .rel_key = {n}_key, .rel_value = {n}_value, .rel_clip = {a.rel_pos}, .grid_side = {side}, "
                f".cls = {int(a.cls_token)}")

    def head(self) -> str:
        a = self.arch
        pool = self.q.consts.get("head.pool", {"multiplier": 0, "shift": 0})
        return (f"static const mcu_head_t head = {{\n"
                f"    .norm = {self.norm('norm', 'head.norm.out')},\n"
                f"    .tokens = {a.num_tokens}, .dim = {a.embed_dim}, .skip_cls = {int(a.cls_token)},\n"
                f"    .pool_multiplier = {int(pool['multiplier'])}, .pool_shift = {int(pool['shift'])}, "
                f".pool_in_zp = {self.zp('head.norm.out')}, .pool_out_zp = {self.zp('head.pooled')},\n"
                f"    .fc = {self.factor('head')}}};\n")

    # ------------------------------------------------------------ kernel calls

    def at(self, tensor: str, int32: bool = False) -> str:
        off = self.plan.offset(tensor)
        return f"(int32_t *)(void *)A({off})" if int32 else f"A({off})"

    def scratch(self, op: Op, suffix: str, int32: bool = False) -> str:
        for t in op.scratch:
            if t.name.endswith("." + suffix):
                return self.at(t.name, int32)
        return "0"

    def struct_of(self, op: Op) -> str:
        """The section struct an op belongs to: ``&blocks_3`` for ``blocks.3.*``."""
        parts = op.name.split(".")
        return f"&{parts[0]}_{parts[1]}" if parts[0] == "blocks" else "&head"

    def factor_ref(self, name: str) -> str:
        """``blocks.0.attn.qkv.down`` -> ``&blocks_0.qkv.down``; a dense layer is its struct's ``up``."""
        if name == "head":
            return "&head.fc"
        m = re.fullmatch(r"blocks\.(\d+)\.(?:attn|mlp)\.(qkv|proj|fc1|fc2)(?:\.(down|up))?", name)
        if not m:
            raise ValueError(f"no struct member for linear {name}")
        return f"&blocks_{m[1]}.{m[2]}.{m[3] or 'up'}"

    def call(self, op: Op) -> str:
        k, ins, outs = op.kernel, [self.at(t.name) for t in op.inputs], [self.at(t.name) for t in op.outputs]
        b = self.struct_of(op)
        h0, h1 = op.attrs.get("heads", (0, 0))
        if k in ("patch_embed", "patch_embed_pos"):
            return f"mcu_patch_embed(&stem, {ins[0]}, {outs[0]}, {int(k == 'patch_embed_pos')});"
        if k == "pos_add":
            return f"mcu_{'conv_stem_' if self.arch.stem == 'conv' else ''}pos_add(&stem, {ins[0]}, {outs[0]});"
        if k in ("conv3x3", "maxpool"):
            return (f"mcu_conv_stem_stage(&stem, {op.attrs['stage']}, {ins[0]}, {outs[0]}, {self.scratch(op, 'col')}, "
                    f"{int(op.attrs['add_pos'])});")
        if k == "conv_stem_rows":
            rings = ", ".join(self.scratch(op, f"ring{j}") for j in range(3))
            return (f"mcu_conv_stem_rows(&stem, {ins[0]}, {outs[0]}, {rings}, {self.scratch(op, 'col')}, "
                    f"{int(op.attrs['add_pos'])});")
        if k == "layernorm":
            norm = op.params[0].name.rsplit(".", 1)[0]
            ref = "&head.norm" if norm == "norm" else f"{b}.{norm.rsplit('.', 1)[1]}"
            return f"mcu_layernorm({ref}, {ins[0]}, {outs[0]}, {op.inputs[0].shape[0]});"
        if k == "linear":
            name = op.params[0].name.rsplit(".", 1)[0]
            if "heads" in op.attrs:
                return f"mcu_linear_qkv_heads({b}, {self.factor_ref(name)}, {ins[0]}, {outs[0]}, {h0}, {h1});"
            tokens = op.inputs[0].shape[0] if len(op.inputs[0].shape) == 2 else 1
            return f"mcu_linear({self.factor_ref(name)}, {ins[0]}, {outs[0]}, {tokens});"
        if k == "matmul_qk":
            return f"mcu_matmul_qk({b}, {ins[0]}, {outs[0]}, {h1 - h0}, {self.scratch(op, 'rel_pos', True)});"
        if k == "softmax":
            rows = math.prod(op.inputs[0].shape[:-1])
            return f"mcu_softmax({b}, {ins[0]}, {outs[0]}, {rows});"
        if k == "matmul_av":
            return (f"mcu_matmul_av({b}, {ins[0]}, {ins[1]}, {outs[0]}, {h0}, {h1}, "
                    f"{self.scratch(op, 'rel_pos', True)});")
        if k == "add":
            which = "add1" if op.name.endswith("add1") else "add2"
            return f"mcu_add(&{b[1:]}.{which}, {ins[0]}, {ins[1]}, {outs[0]}, {math.prod(op.inputs[0].shape)});"
        if k == "gelu":
            return f"mcu_gelu({b[1:]}.gelu_lut, {ins[0]}, {outs[0]}, {math.prod(op.inputs[0].shape)});"
        s = lambda name, int32=False: self.scratch(op, name, int32)  # noqa: E731
        if k == "ln_kv":
            return f"mcu_ln_kv({b}, {ins[0]}, {outs[0]}, {outs[1]}, {s('ln')}, {s('mid')}, {h0}, {h1});"
        if k == "attention":
            return (f"mcu_attention({b}, {ins[0]}, {ins[1]}, {ins[2]}, {outs[0]}, {s('ln')}, {s('mid')}, {s('q')}, "
                    f"{s('scores')}, {h0}, {h1}, {s('rel_pos', True)});")
        if k == "attention_proj_residual":
            return (f"mcu_attention_proj_residual({b}, {ins[0]}, {ins[1]}, {ins[2]}, {outs[0]}, {s('ln')}, "
                    f"{s('mid')}, {s('q')}, {s('scores')}, {s('o')}, {s('proj_mid')}, {s('rel_pos', True)});")
        if k == "proj_residual":
            return f"mcu_proj_residual({b}, {ins[0]}, {ins[1]}, {outs[0]}, {s('proj_mid')});"
        if k == "mlp_residual":
            return (f"mcu_mlp_residual({b}, {ins[0]}, {outs[0]}, {s('ln')}, {s('mid1')}, {s('hidden')}, "
                    f"{s('mid2')});")
        if k == "ln_fc1_gelu":
            return f"mcu_ln_fc1_gelu({b}, {ins[0]}, {outs[0]}, {s('ln')}, {s('mid1')});"
        if k == "fc2_residual":
            return f"mcu_fc2_residual({b}, {ins[0]}, {ins[1]}, {outs[0]}, {s('mid2')});"
        if k == "mean_pool":
            return f"mcu_mean_pool(&head, {ins[0]}, {outs[0]}, {s('sums', True)});"
        if k == "take_cls":
            return f"mcu_take_cls(&head, {ins[0]}, {outs[0]});"
        if k == "ln_pool":
            return (f"mcu_ln_pool(&head, {ins[0]}, {outs[0]}, {s('ln')}, {s('sums', True)}, "
                    f"{int(op.attrs['pool'] == 'cls')}, {int(bool(op.attrs.get('in_place')))});")
        raise ValueError(f"the engine has no kernel {k!r} (op {op.name})")


def _array(name: str, values: np.ndarray, external: bool = False, per_line: int = 24) -> str:
    flat = values.reshape(-1)
    body = ",\n".join("    " + ", ".join(str(int(v)) for v in flat[i:i + per_line])
                      for i in range(0, flat.size, per_line))
    where = "MCU_CONST_EXT" if external else "MCU_CONST"
    return (f"/* {name} {tuple(values.shape)} */\n"
            f"const {C_TYPES[str(values.dtype)]} {c_name(name)}[{flat.size}] {where}({c_name(name)}) = "
            f"{{\n{body}\n}};\n")


def _header(q: QuantModel, macs: int, ops: list[Op], plan: ArenaPlan, techniques: str) -> str:
    a = q.arch
    s_in, z_in = q.act["image"]
    s_out, z_out = q.act["logits"]
    image, logits = plan.offset("image"), plan.offset("logits")
    return f"""/* Generated by mcuformer export: {a.short()}
 * techniques: {techniques}; {len(ops)} kernel calls, {macs:,} int8 MACs per inference.
 * The whole inference state lives in one static arena of MCUFORMER_ARENA_BYTES (no malloc, no
 * other globals); the constants are const arrays in flash. */
#ifndef MCUFORMER_MODEL_H
#define MCUFORMER_MODEL_H

#include <stdint.h>

#define MCUFORMER_ARENA_BYTES {plan.arena_bytes}
#define MCUFORMER_IMAGE_SIZE {a.img_size}
#define MCUFORMER_IMAGE_CHANNELS {a.in_chans}
#define MCUFORMER_INPUT_BYTES {a.img_size * a.img_size * a.in_chans} /* int8, HWC */
#define MCUFORMER_NUM_CLASSES {a.num_classes}
#define MCUFORMER_MACS {macs}
/* real = scale * (q - zero_point) */
#define MCUFORMER_INPUT_SCALE {float(s_in)!r}
#define MCUFORMER_INPUT_ZERO_POINT {int(z_in)}
#define MCUFORMER_OUTPUT_SCALE {float(s_out)!r}
#define MCUFORMER_OUTPUT_ZERO_POINT {int(z_out)}
/* where the image and the logits live inside the arena */
#define MCUFORMER_INPUT_OFFSET {image}
#define MCUFORMER_OUTPUT_OFFSET {logits}

/* Guard bytes around the arena (verification builds: -DMCUFORMER_GUARD_BYTES=64);
 * {GUARD_PATTERN_NOTE}. */
#ifndef MCUFORMER_GUARD_BYTES
#define MCUFORMER_GUARD_BYTES 0
#endif

/* The input buffer inside the arena: write the int8 HWC image here (e.g. by DMA) and call
 * mcuformer_invoke(0, logits), or pass the image to mcuformer_invoke, which copies it here. */
int8_t *mcuformer_input(void);
/* One inference. image: 0 or the input buffer (no copy), or any other buffer (copied in).
 * logits: 0, or MCUFORMER_NUM_CLASSES int8 values (real = OUTPUT_SCALE * (q - OUTPUT_ZERO_POINT)).
 * Returns the index of the largest logit. */
int mcuformer_invoke(const int8_t *image, int8_t *logits);
/* Horizontal-flip test-time augmentation: two inferences, on the image and on its mirror image, whose
 * int8 logits are summed (an int16 each, in sums unless it is 0). Twice the time of mcuformer_invoke, the same
 * arena (the mirror goes into the input buffer). image: an int8 HWC image outside the arena (the first
 * inference overwrites the input buffer).
 * Returns the index of the largest sum (the first on ties), or -1 when image is 0 or the input buffer. */
int mcuformer_invoke_hflip(const int8_t *image, int16_t *sums);
/* Guard bytes: fill before a run, count the damaged ones after (0 when MCUFORMER_GUARD_BYTES is 0). */
void mcuformer_guard_fill(void);
int mcuformer_guard_damage(void);

#endif
"""


def generate(q: QuantModel, ops: list[Op], plan: ArenaPlan, techniques: str = "all",
             external: frozenset[str] = frozenset()) -> GeneratedModel:
    """``external``: the names of the constants that go to the board's external flash (the ones that do
    not fit the internal flash beside the code; export.place_constants)."""
    w = _Writer(q, ops, plan)
    a = q.arch
    macs = sum(op.macs for op in ops)
    calls = []
    for op in ops:
        desc = op.kernel + (f" heads {op.attrs['heads'][0]}..{op.attrs['heads'][1] - 1}" if "heads" in op.attrs else "")
        calls.append(f"    /* {op.name}: {desc} */\n    {w.call(op)}")
    sections = [w.stem()] + [w.block(i) for i in range(a.depth)] + [w.head()]
    source = f"""/* Generated by mcuformer export: {a.short()}. The op list of the memory model, one kernel call
 * per op, on the arena offsets of its plan ({plan.arena_bytes:,} bytes; lower bound
 * {plan.lower_bound_bytes:,}). */
#include <string.h>

#include "mcuformer_model.h"
#include "mcuformer_weights.h"
#include "mcu_kernels.h"

#define ARENA_WORDS ((MCUFORMER_ARENA_BYTES + 2 * MCUFORMER_GUARD_BYTES + 3) / 4)
/* The one arena. int32 words so that the int32 pooling sums are accessed through their own type. */
static int32_t mcuformer_arena[ARENA_WORDS];
#define ARENA ((int8_t *)mcuformer_arena + MCUFORMER_GUARD_BYTES)
#define A(offset) (ARENA + (offset))

{chr(10).join(sections)}
int8_t *mcuformer_input(void)
{{
    return A(MCUFORMER_INPUT_OFFSET);
}}

int mcuformer_invoke(const int8_t *image, int8_t *logits)
{{
    if (image && image != A(MCUFORMER_INPUT_OFFSET)) memcpy(A(MCUFORMER_INPUT_OFFSET), image, MCUFORMER_INPUT_BYTES);
{chr(10).join(calls)}
    const int8_t *out = A(MCUFORMER_OUTPUT_OFFSET);
    int best = 0;
    for (int c = 1; c < MCUFORMER_NUM_CLASSES; c++) best = out[c] > out[best] ? c : best;
    if (logits) memcpy(logits, out, MCUFORMER_NUM_CLASSES);
    return best;
}}

int mcuformer_invoke_hflip(const int8_t *image, int16_t *sums)
{{
    if (!image || image == A(MCUFORMER_INPUT_OFFSET)) return -1;
    int8_t plain[MCUFORMER_NUM_CLASSES], mirrored[MCUFORMER_NUM_CLASSES];
    mcuformer_invoke(image, plain);
    int8_t *input = A(MCUFORMER_INPUT_OFFSET);
    for (int y = 0; y < MCUFORMER_IMAGE_SIZE; y++) {{
        const int8_t *row = image + y * MCUFORMER_IMAGE_SIZE * MCUFORMER_IMAGE_CHANNELS;
        int8_t *out = input + y * MCUFORMER_IMAGE_SIZE * MCUFORMER_IMAGE_CHANNELS;
        for (int x = 0; x < MCUFORMER_IMAGE_SIZE; x++)
            memcpy(out + x * MCUFORMER_IMAGE_CHANNELS, row + (MCUFORMER_IMAGE_SIZE - 1 - x) * MCUFORMER_IMAGE_CHANNELS,
                   MCUFORMER_IMAGE_CHANNELS);
    }}
    mcuformer_invoke(0, mirrored);
    int best = 0;
    for (int c = 0; c < MCUFORMER_NUM_CLASSES; c++) {{
        const int16_t sum = (int16_t)(plain[c] + mirrored[c]);
        if (sums) sums[c] = sum;
        best = sum > plain[best] + mirrored[best] ? c : best;
    }}
    return best;
}}

static uint8_t guard_byte(int i)
{{
    return (uint8_t)(0xA5 ^ (i * 37));
}}

void mcuformer_guard_fill(void)
{{
    uint8_t *bytes = (uint8_t *)mcuformer_arena;
    for (int i = 0; i < MCUFORMER_GUARD_BYTES; i++) {{
        bytes[i] = guard_byte(i);
        bytes[MCUFORMER_GUARD_BYTES + MCUFORMER_ARENA_BYTES + i] = guard_byte(i + MCUFORMER_GUARD_BYTES);
    }}
}}

int mcuformer_guard_damage(void)
{{
    const uint8_t *bytes = (const uint8_t *)mcuformer_arena;
    int damaged = 0;
    for (int i = 0; i < MCUFORMER_GUARD_BYTES; i++) {{
        damaged += bytes[i] != guard_byte(i);
        damaged += bytes[MCUFORMER_GUARD_BYTES + MCUFORMER_ARENA_BYTES + i] != guard_byte(i + MCUFORMER_GUARD_BYTES);
    }}
    return damaged;
}}
"""
    names = list(q.params)
    decls = "\n".join(f"extern const {C_TYPES[str(q.params[n].dtype)]} {c_name(n)}[{q.params[n].size}];" for n in names)
    weights_header = f"""/* Generated by mcuformer export: the model's constants (flash). */
#ifndef MCUFORMER_WEIGHTS_H
#define MCUFORMER_WEIGHTS_H

#include <stdint.h>

{decls}

#endif
"""
    unknown = sorted(set(external) - set(names))
    if unknown:
        raise ValueError(f"external constants not in the model: {unknown}")
    arrays = "\n".join(_array(n, q.params[n], n in external) for n in names)
    ext_bytes = sum(q.params[n].nbytes for n in external)
    weights = f"""/* Generated by mcuformer export: {sum(v.nbytes for v in q.params.values()):,} bytes of constants.
 * MCU_CONST ones stay in the internal flash. MCU_CONST_EXT ones ({len(external)}, {ext_bytes:,} bytes) did not fit
 * it beside the code: with -DMCUFORMER_WEIGHTS_EXTERNAL they go to the linker script's .extflash region (QSPI). */
#include "mcuformer_weights.h"

#if defined(__GNUC__)
#define MCU_CONST(name) __attribute__((aligned(4)))
#else
#define MCU_CONST(name)
#endif
#if defined(MCUFORMER_WEIGHTS_EXTERNAL) && defined(__GNUC__)
#define MCU_CONST_EXT(name) __attribute__((section(".extflash." #name), aligned(4)))
#else
#define MCU_CONST_EXT(name) MCU_CONST(name)
#endif

{arrays}"""
    return GeneratedModel(_header(q, macs, ops, plan, techniques), source, weights,
                          weights_header, plan.arena_bytes, macs, len(ops))
