"""The memory-scheduling techniques, each switchable so that its effect can be measured alone.

A technique is a *permission*: the scheduler uses it in a section of the network (the stem, one
block, the head) unless it would raise that section's peak, so switching a technique on can never
raise the planned peak (see ``schedule.py``). The arithmetic never changes: every schedule runs the
same int8 kernels on the same values, so the logits are bit-identical whatever is switched on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from mcuformer.errors import ConfigError

TECHNIQUES = ("operator_integration", "patch_decomposition", "token_overwriting", "head_by_head", "row_by_row")


@dataclass(frozen=True)
class Techniques:
    """Which scheduling techniques the engine may use.

    operator_integration  fused kernels: LayerNorm into the next linear, the low-rank pair per token,
                          GELU into fc1, the residual add into proj/fc2, the position add into the
                          patch embedding, QK^T + softmax + AV one query row at a time.
    patch_decomposition   the patch embedding writes tokens over image rows it has consumed.
    token_overwriting     an op whose input dies writes its output over it, token by token: the
                          attention (projection included) and MLP outputs over x, softmax, GELU,
                          the residual and position adds and the final LayerNorm in place.
    head_by_head          attention one head at a time: only that head's q/k/v (K_h, V_h) and
                          scores exist; the heads' outputs gather in one N x H*hd buffer.
    row_by_row            a conv stem computes its feature maps a few rows at a time (rings of three
                          rows per stage) instead of whole maps (no effect on a patch stem).
    """

    operator_integration: bool = True
    patch_decomposition: bool = True
    token_overwriting: bool = True
    head_by_head: bool = True
    row_by_row: bool = True

    @classmethod
    def all(cls) -> "Techniques":
        return cls()

    @classmethod
    def none(cls) -> "Techniques":
        return cls(**{name: False for name in TECHNIQUES})

    @classmethod
    def only(cls, *names: str) -> "Techniques":
        _check_names(names)
        return cls(**{name: name in names for name in TECHNIQUES})

    @classmethod
    def parse(cls, spec: str) -> "Techniques":
        """'all', 'none', or a comma-separated list of technique names (the CLI's --techniques)."""
        spec = spec.strip()
        if spec == "all":
            return cls.all()
        if spec == "none":
            return cls.none()
        names = [s.strip() for s in spec.split(",") if s.strip()]
        if not names:
            raise ConfigError("no techniques named; give 'all', 'none' or a comma-separated list")
        return cls.only(*names)

    def without(self, name: str) -> "Techniques":
        _check_names([name])
        return replace(self, **{name: False})

    def enabled(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if getattr(self, f.name))

    def label(self) -> str:
        on = self.enabled()
        if len(on) == len(TECHNIQUES):
            return "all"
        return "+".join(on) if on else "none"

    def to_dict(self) -> dict[str, bool]:
        return {name: getattr(self, name) for name in TECHNIQUES}


def _check_names(names) -> None:
    unknown = [n for n in names if n not in TECHNIQUES]
    if unknown:
        raise ConfigError(f"unknown technique(s) {unknown}; known: {', '.join(TECHNIQUES)} (or 'all', 'none')")
