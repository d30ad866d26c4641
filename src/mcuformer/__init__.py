"""mcuformer: vision transformers on microcontrollers (MCUFormer, NeurIPS 2023, made complete).

Pipeline (one-way imports): space -> supernet -> train -> memory -> search -> quantize -> codegen -> verify.
"""

__version__ = "0.1.0"
