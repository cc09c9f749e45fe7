"""`--mixed_precision=auto`'s choice, from the CPU's flags and the GPUs."""

from keras_alexnet.training import precision


def test_cpu_flags_reads_the_kernels_list(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "avx512f", "amx_bf16", "amx_tile"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()
    assert precision.matrix_features({"fpu", "avx2", "amx_bf16", "avx512f"}) == [
        "amx_bf16",
        "avx512f",
        "avx2",
    ]


def test_auto_is_bfloat16_only_with_amx_and_no_gpu():
    amx = {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f"}
    assert precision.auto_precision(0, amx)[0] == "bfloat16"
    assert precision.auto_precision(1, amx)[0] == "none"
    choice, reason = precision.auto_precision(0, {"avx512_bf16", "avx512f"})
    assert choice == "none" and "avx512_bf16, avx512f" in reason and "no AMX-BF16" in reason
    assert precision.auto_precision(0, set())[0] == "none"
