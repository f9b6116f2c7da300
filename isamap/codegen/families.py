"""Code-generation families: the C prelude each one emits (vector type and helpers) and its flags.

Every family defines the same small vocabulary as static inline C functions -- `V` (a vector of
`LANES` floats), `vload`, `vstore`, `vset1`, `vzero`, `vfma`, `vadd`, `vsub`, `vmul`, `vdiv`,
`vmax`, `vexp`, the masked `vloadn`/`vstoren` and `vload_range`, `vload_even` (one phase of
a stride-2 row), and `vpair_even`/`vpair_odd`/`vunpair` (the phases of a pair of vectors, in an
order of the family's choosing, and that order undone) -- so the loop nests and micro-kernels
of `isamap.codegen` are written once and the family only changes this prelude and the compiler
flags. The text is isamap's own; nothing here comes from a target file.
"""

from __future__ import annotations

from dataclasses import dataclass

from isamap.ir.errors import IsamapError

__all__ = ["FAMILIES", "Family", "family"]


@dataclass(frozen=True)
class Family:
    """One code-generation family: vector lanes of f32, its C prelude and compiler flags."""

    name: str
    lanes: int
    prelude: str
    flags: tuple[str, ...]


_COMMON = r"""
static inline V vneg(V x) { return vsub(vzero(), x); }
static inline V vrelu(V x) { return vmax(x, vzero()); }
static inline V vrelu6(V x) { return vmin(vmax(x, vzero()), vset1(6.0f)); }
static inline V vsigmoid(V x) { return vdiv(vset1(1.0f), vadd(vset1(1.0f), vexp(vneg(x)))); }
static inline V vtanh(V x) {
  V s = vdiv(vset1(2.0f), vadd(vset1(1.0f), vexp(vmul(vset1(-2.0f), x))));
  return vsub(s, vset1(1.0f));
}
static inline V verf(V x) {
  float t[LANES];
  vstore(t, x);
  for (int i = 0; i < LANES; ++i) t[i] = erff(t[i]);
  return vload(t);
}
static inline float vhsum(V x) {
  float t[LANES];
  vstore(t, x);
  float s = 0.0f;
  for (int i = 0; i < LANES; ++i) s += t[i];
  return s;
}
"""

# Cephes-style expf: x = t ln2 + r with t = round(x log2 e), e^r by a degree-5 polynomial,
# 2^t built in the exponent bits; inputs clamped to the range of normal floats.
_VEXP = r"""
static inline V vexp(V x) {
  x = vmax(vmin(x, vset1(88.3762626647949f)), vset1(-87.3365478515625f));
  V t = vfloor(vfma(x, vset1(1.44269504088896341f), vset1(0.5f)));
  V r = vfma(t, vset1(-0.693359375f), x);
  r = vfma(t, vset1(2.12194440e-4f), r);
  V p = vset1(1.9875691500e-4f);
  p = vfma(p, r, vset1(1.3981999507e-3f));
  p = vfma(p, r, vset1(8.3334519073e-3f));
  p = vfma(p, r, vset1(4.1665795894e-2f));
  p = vfma(p, r, vset1(1.6666665459e-1f));
  p = vfma(p, r, vset1(5.0000001201e-1f));
  p = vfma(p, vmul(r, r), vadd(r, vset1(1.0f)));
  return vmul(p, vpow2i(t));
}
"""

_AVX512 = r"""
#include <immintrin.h>
#include <math.h>
#define LANES 16
typedef __m512 V;
static inline V vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, V x) { _mm512_storeu_ps(p, x); }
static inline V vset1(float x) { return _mm512_set1_ps(x); }
static inline V vzero(void) { return _mm512_setzero_ps(); }
static inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
static inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
static inline V vsqrt(V x) { return _mm512_sqrt_ps(x); }
static inline V vfloor(V x) {
  return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
}
/* the first n (0 < n <= LANES) lanes, masked: no access past them */
static inline V vloadn(const float* p, int n) {
  return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1u), p);
}
static inline void vstoren(float* p, V x, int n) {
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), x);
}
/* p[0], p[2], ..., p[2 * LANES - 2]: one phase of a stride-2 row (reads 2 * LANES floats) */
static inline V vload_even(const float* p) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
}
/* the even / odd lanes of the 2 * LANES floats (a, b), in the order vunpair restores */
static inline V vpair_even(V a, V b) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_ps(a, even, b);
}
static inline V vpair_odd(V a, V b) {
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  return _mm512_permutex2var_ps(a, odd, b);
}
static inline V vunpair(V x) { return x; }
/* row[b], ..., row[b + LANES - 1], zero where b + i lies outside [0, n): no access there */
static inline V vload_range(const float* row, int b, int n) {
  int lo = b < 0 ? -b : 0, hi = n - b < LANES ? n - b : LANES;
  if (hi <= lo) return vzero();
  __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
  return _mm512_maskz_loadu_ps(m, (const float*)((uintptr_t)row + (intptr_t)b * 4));
}
static inline V vpow2i(V t) {
  __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(t), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
"""

_AVX2 = r"""
#include <immintrin.h>
#include <math.h>
#define LANES 8
typedef __m256 V;
static inline V vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, V x) { _mm256_storeu_ps(p, x); }
static inline V vset1(float x) { return _mm256_set1_ps(x); }
static inline V vzero(void) { return _mm256_setzero_ps(); }
static inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
static inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
static inline V vsqrt(V x) { return _mm256_sqrt_ps(x); }
static inline V vfloor(V x) { return _mm256_floor_ps(x); }
/* the first n (0 < n <= LANES) lanes, masked: no access past them */
static inline __m256i vmaskn(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline V vloadn(const float* p, int n) { return _mm256_maskload_ps(p, vmaskn(n)); }
static inline void vstoren(float* p, V x, int n) { _mm256_maskstore_ps(p, vmaskn(n), x); }
/* p[0], p[2], ..., p[2 * LANES - 2]: one phase of a stride-2 row (reads 2 * LANES floats) */
static inline V vload_even(const float* p) {
  __m256 e = _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), 0x88);
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}
/* the even / odd lanes of the 2 * LANES floats (a, b), in the order vunpair restores: each
   128-bit half on its own (one shuffle), so lanes 2-3 and 4-5 come swapped */
static inline V vpair_even(V a, V b) { return _mm256_shuffle_ps(a, b, 0x88); }
static inline V vpair_odd(V a, V b) { return _mm256_shuffle_ps(a, b, 0xDD); }
static inline V vunpair(V x) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(x), 0xD8));
}
/* row[b], ..., row[b + LANES - 1], zero where b + i lies outside [0, n): no access there */
static inline V vload_range(const float* row, int b, int n) {
  __m256i i = _mm256_add_epi32(_mm256_set1_epi32(b), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), i),
                                   _mm256_cmpgt_epi32(_mm256_set1_epi32(n), i));
  return _mm256_maskload_ps((const float*)((uintptr_t)row + (intptr_t)b * 4), in);
}
static inline V vpow2i(V t) {
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(t), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
"""

# Portable C: GCC/Clang vector extensions (SSE2, NEON, ... or scalar code, as the compiler can),
# unaligned access through memcpy, exp by libm per lane.
_PORTABLE = r"""
#include <math.h>
#define LANES 4
typedef float V __attribute__((vector_size(16)));
static inline V vload(const float* p) { V x; memcpy(&x, p, sizeof x); return x; }
static inline void vstore(float* p, V x) { memcpy(p, &x, sizeof x); }
static inline V vset1(float x) { V r = {x, x, x, x}; return r; }
static inline V vzero(void) { V r = {0.0f, 0.0f, 0.0f, 0.0f}; return r; }
static inline V vfma(V a, V b, V c) { return a * b + c; }
static inline V vadd(V a, V b) { return a + b; }
static inline V vsub(V a, V b) { return a - b; }
static inline V vmul(V a, V b) { return a * b; }
static inline V vdiv(V a, V b) { return a / b; }
static inline V vmax(V a, V b) {
  V r;
  for (int i = 0; i < 4; ++i) r[i] = a[i] > b[i] ? a[i] : b[i];
  return r;
}
static inline V vmin(V a, V b) {
  V r;
  for (int i = 0; i < 4; ++i) r[i] = a[i] < b[i] ? a[i] : b[i];
  return r;
}
static inline V vexp(V x) { V r; for (int i = 0; i < 4; ++i) r[i] = expf(x[i]); return r; }
static inline V vloadn(const float* p, int n) {
  float t[LANES] = {0};
  for (int i = 0; i < n; ++i) t[i] = p[i];
  return vload(t);
}
static inline void vstoren(float* p, V x, int n) {
  float t[LANES];
  vstore(t, x);
  for (int i = 0; i < n; ++i) p[i] = t[i];
}
static inline V vsqrt(V x) { V r; for (int i = 0; i < 4; ++i) r[i] = sqrtf(x[i]); return r; }
static inline V vload_even(const float* p) { V r = {p[0], p[2], p[4], p[6]}; return r; }
static inline V vpair_even(V a, V b) { V r = {a[0], a[2], b[0], b[2]}; return r; }
static inline V vpair_odd(V a, V b) { V r = {a[1], a[3], b[1], b[3]}; return r; }
static inline V vunpair(V x) { return x; }
static inline V vload_range(const float* row, int b, int n) {
  V r = vzero();
  for (int i = 0; i < LANES; ++i)
    if (b + i >= 0 && b + i < n) r[i] = row[b + i];
  return r;
}
"""

_HEAD = r"""#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* 64-byte aligned scratch memory. A freed block is kept (up to ISA_KEEP per thread) and handed
   to the next allocation of the same size, so a program run again and again reuses its buffers
   instead of mapping and faulting in fresh pages on every call. The size lives in a 64-byte
   header before the block. */
#define ISA_KEEP 16
static _Thread_local void* isa_kept[ISA_KEEP];
static void* isa_alloc(size_t bytes) {
  size_t want = (bytes + 127) / 64 * 64;
  for (int i = 0; i < ISA_KEEP; ++i)
    if (isa_kept[i] && *(size_t*)isa_kept[i] == want) {
      char* base = isa_kept[i];
      isa_kept[i] = NULL;
      return base + 64;
    }
  char* base = aligned_alloc(64, want + 64);
  if (!base) return NULL;
  *(size_t*)base = want;
  return base + 64;
}
static void isa_free(void* p) {
  if (!p) return;
  char* base = (char*)p - 64;
  for (int i = 0; i < ISA_KEEP; ++i)
    if (!isa_kept[i]) { isa_kept[i] = base; return; }
  free(base);
}
"""

FAMILIES: dict[str, Family] = {
    "avx512": Family(
        "avx512",
        16,
        _HEAD + _AVX512 + _VEXP + _COMMON,
        ("-O3", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"),
    ),
    "avx2": Family("avx2", 8, _HEAD + _AVX2 + _VEXP + _COMMON, ("-O3", "-mavx2", "-mfma")),
    "c": Family("c", 4, _HEAD + _PORTABLE + _COMMON, ("-O3",)),
}


def family(name: str | None) -> Family:
    """The family called `name`; IsamapError for a target without one (not a CPU target)."""
    if name is None:
        raise IsamapError("not a CPU target: it has no [target] codegen family to emit C for")
    try:
        return FAMILIES[name]
    except KeyError:
        raise IsamapError(
            f"unknown code-generation family '{name}' (known: {', '.join(FAMILIES)})"
        ) from None
