"""Does the cost model rank first what the simulator finds fastest? Random small kernels.

For seeded random GEMMs, 3x3 convolutions and depthwise layers (with and without MobileNet's
bias, ReLU6 and int8 requantization), in the target's own types: the k best mappings under the
`latency` cost model, each scheduled (heuristic) and simulated; the row reports the first-ranked
mapping's simulated cycles over the best candidate's, and each candidate's estimate against its
simulated cycles. `tests/extract/test_cost_agreement.py` quotes its figures.

Run: python benchmarks/cost_ranking.py [--target gemmini] [--kernels 20] [--k 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import time

import isamap
from isamap.compile import _scheduled
from isamap.extract.exact import variants_exact
from isamap.ir import builders
from isamap.quantize import hardware_kernel

#: ReLU6's range filling int8 (127 / 6 in f32), the scale the suites' layers requantize with.
RELU6_SCALE = 21.16666603088379


def depthwise(c: int, hw: int, stride: int, epilogue: bool) -> isamap.Kernel:
    """A 3x3 depthwise layer, int8 in; with `epilogue`, bias, ReLU6 and the int8 cast."""
    out = (hw - 1) // stride + 1
    text = f"tensor X[1, {c}, {hw}, {hw}] i8 pad(0:0, 0:0, 1:1, 1:1)\ntensor F[{c}, 3, 3] i8\n"
    if epilogue:
        text += f"tensor B[{c}] i32\ntensor Yq[1, {c}, {out}, {out}] i8\n"
    text += f"O[n, c, h, w] += X[n, c, {stride}*h + r - 1, {stride}*w + s - 1] * F[c, r, s]\n"
    if epilogue:
        text += (
            "Y[n, c, h, w] = O[n, c, h, w] + B[c]\n"
            "Y2[n, c, h, w] = min(relu(Y[n, c, h, w]), 6)\n"
            f"Yq[n, c, h, w] = {RELU6_SCALE} * Y2[n, c, h, w]\n"
        )
    return isamap.parse_kernel(text, name=f"dw c{c} {hw}x{hw} s{stride}{' +epilogue' * epilogue}")


def random_kernel(rng: random.Random) -> isamap.Kernel:
    kind = rng.choice(["gemm", "conv", "dw", "dw", "dw_epilogue"])
    if kind == "gemm":
        return builders.matmul(rng.randint(1, 200), rng.randint(8, 200), rng.randint(8, 200))
    if kind == "conv":
        c, k = rng.choice([3, 8, 16, 24]), rng.choice([8, 16, 32])
        h, w = rng.randint(6, 16), rng.randint(6, 16)
        return builders.conv2d(1, c, h, w, k, 3, 3, stride=rng.choice([1, 2]), padding=1)
    c, hw = rng.choice([16, 32, 48, 64]), rng.randint(6, 20)
    return depthwise(c, hw, rng.choice([1, 2]), kind == "dw_epilogue")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="gemmini")
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    target = isamap.load_target(args.target)
    rng = random.Random(args.seed)
    ratios = []
    print("| kernel | shape | first / best simulated | estimates | simulated | seconds |")
    print("|---|---|---:|---|---|---:|")
    for _ in range(args.kernels):
        kernel = hardware_kernel(random_kernel(rng), target)
        t0 = time.perf_counter()
        mappings = variants_exact(isamap.saturate(kernel, target), args.k)
        sims = [_scheduled(m, target, "heuristic", kernel)[1].cycles for m in mappings]
        ratio = sims[0] / min(sims)
        ratios.append(ratio)
        shape = "x".join(map(str, kernel.shapes[kernel.inputs()[0]]))
        ests = ", ".join(f"{m.cost:,.0f}" for m in mappings)
        simulated = ", ".join(f"{s:,.0f}" for s in sims)
        seconds = time.perf_counter() - t0
        print(f"| {kernel.name} | {shape} | {ratio:.3f} | {ests} | {simulated} | {seconds:.1f} |")
    worse = sum(r > 1 + 1e-9 for r in ratios)
    print(f"\nfirst-ranked slower than the best candidate: {worse} of {len(ratios)}, "
          f"worst {max(ratios):.3f}x")  # fmt: skip


if __name__ == "__main__":
    main()
