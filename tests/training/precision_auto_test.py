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


def test_the_train_flag_defaults_to_auto_and_resolve_chooses_for_this_machine():
    import tensorflow as tf

    from keras_alexnet.training import config as config_lib

    # The library's default stays float32 (the paper's); the tool's flag is auto.
    assert config_lib.TrainConfig().mixed_precision == "none"
    field = {f.name: f for f in config_lib.dataclasses.fields(config_lib.TrainConfig)}
    assert field["mixed_precision"].metadata["flag_default"] == "auto"
    resolved = config_lib.resolve(config_lib.TrainConfig(model_dir="m", mixed_precision="auto"))
    expected, reason = precision.auto_precision(len(tf.config.list_physical_devices("GPU")))
    assert resolved.mixed_precision == expected
    assert resolved.precision_reason == f"auto: {reason}"
    # A precision the user names is kept, with no reason to print.
    named = config_lib.resolve(config_lib.TrainConfig(model_dir="m", mixed_precision="bfloat16"))
    assert named.mixed_precision == "bfloat16" and named.precision_reason is None
