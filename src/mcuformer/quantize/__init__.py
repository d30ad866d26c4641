"""int8 post-training quantisation with integer-only LayerNorm, softmax and GELU, and the NumPy
integer reference the C engine must match bit for bit (see docs/quantization.md)."""

__all__ = ["QuantModel", "build_quant_model"]


def __getattr__(name: str):
    # lazy, so that mcuformer.quantize.settings is read without importing torch
    if name in __all__:
        from mcuformer.quantize import model
        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
