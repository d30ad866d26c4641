"""int8 post-training quantisation with integer-only LayerNorm, softmax and GELU, and the NumPy
integer reference the C engine must match bit for bit (see docs/quantization.md)."""

from mcuformer.quantize.model import QuantModel, build_quant_model

__all__ = ["QuantModel", "build_quant_model"]
