"""Reduced precision for an exported teacher: int8 and fp16 (precision), the blocks int8 may take
(mixed_precision), the gate on its drift from fp32 (drift), and a .tflite's int8 (tflite)."""
