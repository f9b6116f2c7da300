"""C code generation for CPU targets: emit a scheduled program as C, compile it, run it natively.

`emit_c` writes the C (`emit.py`: the loop nests, `gemm.py`: packing and micro-kernels,
`families.py`: the vector vocabulary of each family); `load_native` compiles it with the system C
compiler, caches the object (`toolchain.py`) and loads it (`native.py`).
"""

from isamap.codegen.emit import CSource, emit_c
from isamap.codegen.native import NativeProgram, PreparedProgram, load_native
from isamap.codegen.toolchain import BuildError, cache_dir, find_compiler

__all__ = [
    "BuildError",
    "CSource",
    "NativeProgram",
    "PreparedProgram",
    "cache_dir",
    "emit_c",
    "find_compiler",
    "load_native",
]
