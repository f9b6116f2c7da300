"""Frontends: whole models into the IR (`load_onnx`: an ONNX file -> a `Model` of Kernels)."""

from __future__ import annotations

from isamap.frontend.onnx import load_onnx, model_from_proto

__all__ = ["load_onnx", "model_from_proto"]
