"""The precision a run computes in: what the CPU's matrix units offer, and `auto`'s choice.

CPUs with matrix units for bfloat16 (Intel's AMX since Sapphire Rapids) multiply bfloat16
matrices several times faster than float32 (a 2-core Xeon with AMX: 987-1061 against
293-307 GFLOP/s for a 4096x4096 GEMM in TensorFlow 2.21); AVX512_BF16 alone (AMD Zen 4,
Intel Cooper Lake) has bfloat16 dot products, but no tiles. `--mixed_precision=auto`
trains in mixed_bfloat16 only where the CPU has AMX-BF16 and no GPU is visible, and keeps
float32, the paper's arithmetic, everywhere else.
"""

# The CPU flags (/proc/cpuinfo's names) that decide how fast each precision multiplies
# matrices, in the order the benchmark prints them.
MATRIX_FEATURES = (
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "avx512_bf16",
    "avx512_fp16",
    "avx512_vnni",
    "avx512f",
    "avx2",
)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags, as the kernel lists them (an empty set where it does not:
    another OS, or a file that cannot be read)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def matrix_features(flags=None):
    """The CPU's matrix features of `MATRIX_FEATURES` that it has, in that order."""
    flags = cpu_flags() if flags is None else flags
    return [name for name in MATRIX_FEATURES if name in flags]


def auto_precision(gpus, flags=None):
    """`--mixed_precision=auto`'s choice and why.

    Args:
        gpus: the number of GPUs TensorFlow sees.
        flags: the CPU's flags (default: this machine's, `cpu_flags`).

    Returns:
        (precision, reason): "bfloat16" where the CPU has AMX-BF16 and there is no GPU,
        "none" (float32) otherwise; the reason as the run's first lines print it.
    """
    flags = cpu_flags() if flags is None else flags
    if gpus:
        return "none", f"{gpus} GPU(s): float32 (choose --mixed_precision=float16 for speed)"
    if "amx_bf16" in flags:
        return "bfloat16", "the CPU has AMX-BF16: mixed_bfloat16"
    have = ", ".join(matrix_features(flags)) or "none of AMX, AVX-512"
    return "none", f"the CPU has no AMX-BF16 ({have}): float32"
