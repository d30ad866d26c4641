"""Verification of an exported engine: bit-exact logits against the integer reference, on the host
(with sanitizers) and on an emulated Cortex-M7, with its measured memory and instruction count."""

from mcuformer.verify.engine import VerifyError, VerifyResult, verify

__all__ = ["VerifyError", "VerifyResult", "verify"]
