"""data_service: a dispatcher and two workers on 127.0.0.1 (started as users start them)
feed training runs to their end, from image folders (split by step) and record files
(split by file), also when one worker is killed mid-run; the settings the service cannot
honour are refused before any work."""

import dataclasses
import glob
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import fresh_process
import numpy as np
import pytest
import tensorflow as tf
import tfds_sources_test
import tiny
from absl import flags

from keras_alexnet import data_service as data_service_tool
from keras_alexnet.data import folder_sources
from keras_alexnet.data import pipelines as input_pipeline
from keras_alexnet.data import preprocessing
from keras_alexnet.data import service as data_service
from keras_alexnet.data import shard_writer as prepare
from keras_alexnet.data import shards as prepared
from keras_alexnet.data import sources
from keras_alexnet.data import tfds_sources
from keras_alexnet.runs import folder as run_dir
from keras_alexnet.training import config as config_lib
from keras_alexnet.training import launcher as launch
from keras_alexnet.training import run_record as run_setup
from keras_alexnet.training import trainer as train

LOCALHOST = "127.0.0.1"


class Server:
    """A `python -m keras_alexnet.data_service` process and the lines it prints."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keras_alexnet.data_service", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern, seconds=180):
        """The first printed line that matches `pattern` (a regex)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in {seconds} s: {self.output}")
            assert line is not None, f"exited {self.process.wait()}: {''.join(self.output)}"
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def stop(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def cluster():
    """A dispatcher and two workers on 127.0.0.1, started together as separate processes.

    Yields (the dispatcher's "127.0.0.1:PORT", the two worker `Server`s).
    """
    (port,) = launch.free_ports(1)
    address = f"{LOCALHOST}:{port}"
    dispatcher = Server("--dispatcher", f"--port={port}")
    workers = [
        Server("--worker", f"--dispatcher_address={address}", f"--host={LOCALHOST}")
        for _ in range(2)
    ]
    try:
        dispatcher.wait_for(rf"^tf.data service dispatcher listening on port {port} of every ")
        for worker in workers:
            worker.wait_for(
                rf"^tf.data service worker listening on port \d+ of every .*, announced as "
                rf"{LOCALHOST}:\d+, for the dispatcher at {re.escape(address)}$"
            )
        yield address, workers
    finally:
        for server in [dispatcher, *workers]:
            server.stop()


def test_every_step_comes_once_and_as_the_local_pipeline_makes_it(cluster, tiny_root, stats):
    # Two input pipelines (as two trainer processes have), each reading its own share from
    # the service from step 5 on (a resumed run): every batch that comes is the local
    # pipeline's batch of one step >= 5, to the bit, and no step comes twice. Had each worker
    # made every step ("parallel_epochs"), the steps would come twice.
    address, _ = cluster
    source = folder_sources.folder_source(tiny_root)
    for pipeline in range(2):
        context = tf.distribute.InputContext(2, pipeline, 2)
        local = input_pipeline.train_dataset(
            source, global_batch_size=8, stats=stats, seed=1, epoch=0, num_epochs=6,
            input_context=context,
        )  # fmt: skip
        step_of = {
            (x.tobytes(), y.tobytes()): s for s, (x, y) in enumerate(local.as_numpy_iterator())
        }
        assert len(step_of) == 36  # 6 epochs of 6 steps, all different
        served = data_service.distribute(
            input_pipeline.train_dataset_by_step(
                source,
                global_batch_size=8,
                stats=stats,
                seed=1,
                first_step=5,
                input_context=context,
            ),  # fmt: skip
            address,
        )
        steps = [
            step_of.get((x.tobytes(), y.tobytes())) for x, y in served.take(12).as_numpy_iterator()
        ]
        assert None not in steps, steps
        assert len(set(steps)) == 12 and min(steps) >= 5, steps


def test_a_dispatcher_and_two_workers_feed_a_short_run_to_its_end(
    cluster, tmp_path, tiny_root, capsys
):
    address, workers = cluster
    cfg = tiny.train_config(tmp_path / "run", tiny_root, data_service=f"grpc://{address}")
    result = train.train(cfg)
    out = capsys.readouterr().out
    assert f"training batches from the tf.data service at grpc://{address}" in out
    assert result["step"] == 6 and result["epoch"] == 1  # 48 images / batch 8
    assert np.isfinite(result["train"]["cross_entropy"])
    assert result["validation"]["count"] == 16
    assert result["checkpoint"].endswith("ckpt-6")
    assert run_dir.latest_checkpoint(cfg.model_dir) == result["checkpoint"]
    # The steps trained on what came: the weights moved from the run's initial ones.
    initial = train.build_state(run_setup.prepare_run(dataclasses.replace(cfg, data_service=None)))
    trained, _ = run_dir.restore_model(cfg.model_dir)
    moved = [
        not np.allclose(a.numpy(), b.numpy())
        for a, b in zip(initial.model.weights, trained.weights)
    ]
    assert sum(moved) >= len(moved) // 2, moved
    assert all(worker.process.poll() is None for worker in workers)


def test_two_replicas_with_dropout_read_from_the_service(cluster, tmp_path, tiny_root):
    address, _ = cluster
    result = fresh_process.run_module(
        "train",
        f"--data_service={address}",
        "--dataset=folder",
        f"--data_dir={tiny_root}",
        f"--model_dir={tmp_path / 'run'}",
        "--variant=tiny",
        "--cpu_replicas=2",
        "--dropout=0.5",
        "--batch_size=8",
        "--epochs=1",
        "--learning_rate=0.001",
        "--init=paper",
        "--stats_images=16",
        "--projector_images=0",
        "--input_timeout=120",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "global batch 8 over 2 replica(s) (MirroredStrategy)" in result.stdout
    assert "dropout 0.5" in result.stdout
    assert "over 16 images" in result.stdout, result.stdout[-3000:]
    loss = re.search(r"^  step 6/6 +cross_entropy (\S+)", result.stdout, re.M)
    assert loss and np.isfinite(float(loss.group(1))), result.stdout[-3000:]
    assert "Done: step 6" in result.stdout


def test_an_image_that_fails_to_decode_on_a_worker_is_named(cluster, tmp_path, tiny_root, stats):
    address, _ = cluster
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    damaged = sorted((root / "train").iterdir())[0] / "damaged.png"
    damaged.write_bytes(tiny.damaged_png())  # passes the scan, fails to decode
    model_dir = tmp_path / "run"
    run_dir.write_stats(str(model_dir), stats)  # no statistics pass: only a step meets it
    cfg = tiny.train_config(model_dir, str(root), data_service=address, on_bad_image="fail")
    with pytest.raises(ValueError) as raised:
        train.train(cfg)
    message = str(raised.value)
    assert message.startswith("1 training image(s) do not decode"), message
    assert f"{damaged}: Invalid PNG data" in message and "rerun the same command" in message


@pytest.mark.parametrize(
    "address", ["foo", "5050", "http://host:5050", "grpc://host", "host:0", "host:70000", ""]
)
def test_a_malformed_address_is_refused(tmp_path, tiny_root, address):
    cfg = tiny.train_config(tmp_path / "run", tiny_root, data_service=address)
    with pytest.raises(ValueError, match=re.escape(f"Received: data_service={address!r}")):
        config_lib.resolve(cfg)


@pytest.mark.parametrize("address", ["grpc://host:5050", "host:5050", "10.0.0.7:5050"])
def test_well_formed_addresses_are_accepted(tmp_path, tiny_root, address):
    cfg = tiny.train_config(tmp_path / "run", tiny_root, data_service=address)
    assert config_lib.resolve(cfg).data_service == address


def test_deterministic_is_refused_with_the_service_and_record_files_are_not(tmp_path, tiny_root):
    cfg = tiny.train_config(tmp_path / "run", tiny_root, data_service="host:5050")
    with pytest.raises(ValueError, match=r"not a function of the seed.*deterministic=True"):
        config_lib.resolve(dataclasses.replace(cfg, deterministic=True))
    for dataset, data_dir in [("prepared:/data", None), ("imagenet2012", "/data")]:
        resolved = config_lib.resolve(dataclasses.replace(cfg, dataset=dataset, data_dir=data_dir))
        assert resolved.data_service == "host:5050"


def test_an_unreachable_dispatcher_stops_the_run_at_once_naming_it(tmp_path, tiny_root):
    # TensorFlow would retry registering the dataset for ever, silently.
    (port,) = launch.free_ports(1)
    cfg = tiny.train_config(tmp_path / "run", tiny_root, data_service=f"{LOCALHOST}:{port}")
    start = time.monotonic()
    with pytest.raises(ValueError, match=rf"no tf.data dispatcher answers at {LOCALHOST}:{port} "):
        train.train(cfg)
    assert time.monotonic() - start < data_service.CONNECT_SECONDS
    assert run_dir.latest_checkpoint(cfg.model_dir) is None


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "exactly one of --dispatcher and --worker"),
        (["--dispatcher", "--worker"], "exactly one of --dispatcher and --worker"),
        (["--worker"], "--worker needs --dispatcher_address"),
        (["--worker", "--dispatcher_address=host"], "Received: dispatcher_address='host'"),
        (["--worker", "--dispatcher_address=h:1", "--work_dir=/x"], "--work_dir is not a flag"),
        (["--dispatcher", "--dispatcher_address=h:1"], "--dispatcher_address is not a flag"),
    ],
)
def test_the_role_flags_are_checked(args, message):
    flag_values = flags.FlagValues()
    data_service_tool.define_flags(flag_values)
    flag_values(["data_service", *args])
    with pytest.raises(ValueError, match=re.escape(message)):
        data_service_tool.check_flags(flag_values)


def test_the_command_fails_before_serving_on_bad_flags():
    server = Server("--worker", "--dispatcher_address=nohost")
    error = server.wait_for(r"^error: (.*)").group(1)
    assert error.startswith("dispatcher_address must be grpc://HOST:PORT or HOST:PORT"), error
    assert server.process.wait(timeout=60) == 2
    assert not any("Traceback" in line for line in server.output)


def test_a_second_dispatcher_on_a_taken_port_is_refused(cluster):
    # gRPC would share the port with the live dispatcher (SO_REUSEPORT) and take half of
    # its connections.
    port = int(cluster[0].rsplit(":", 1)[1])
    with pytest.raises(ValueError, match=rf"port {port} is taken"):
        data_service.start_dispatcher(port)


@pytest.fixture(scope="module")
def prepared_root(tiny_root, tmp_path_factory):
    """The tiny set prepared in 5 record files (10, 10, 10, 10 and 8 images)."""
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    prepare.prepare(folder_sources.folder_source(tiny_root), str(out), images_per_shard=10)
    return str(out)


def augmented_records(files, epochs, seed, stats):
    """{image bytes: (epoch, file, record, label)} of the files' records in those epochs,
    augmented as the service's workers should: read and parsed here, each seeded by
    (seed, epoch, file, record)."""
    keys, records = [], []
    for epoch in epochs:
        for f, path in enumerate(files):
            for r, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
                keys.append((epoch, f, r))
                records.append(record)
    features = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def augment(record, key):
        example = tf.io.parse_single_example(record, features)
        epoch, f, r = tf.unstack(key)
        index = f * 2**32 + r
        image = preprocessing.preprocess_for_train(example["image"], stats, seed, epoch, index)
        return image, example["label"]

    ds = tf.data.Dataset.from_tensor_slices((records, np.array(keys, np.int64))).map(augment)
    return {x.tobytes(): (*key, int(y)) for key, (x, y) in zip(keys, ds.as_numpy_iterator())}


def test_record_files_are_split_by_file_and_each_record_comes_once(cluster, prepared_root, stats):
    # Two input pipelines read the stream of a resumed run, from step 36 (epoch 1, step 12 of
    # 24: its files 2, 3 and 4 of 5) for two epochs. Every example that comes is a record of
    # the pipeline's share (index % 2) of a file of that stream, augmented with the seed of
    # (seed, epoch, file, record), to the bit; none comes twice, none is missing, and no
    # record of files 0 and 1 of epoch 1 comes.
    address, _ = cluster
    source = prepared.prepared_source(prepared_root)
    files, seed = source.record_files("train"), 3
    assert len(files) == 5 and source.num_train == 48
    expected = augmented_records(files, (1, 2), seed, stats)
    assert len(expected) == 96  # all different
    order = sources.epoch_permutation(5, seed, 1).numpy()
    stream = {(1, f) for f in order[2:]} | {(2, f) for f in range(5)}
    came = []
    for pipeline in range(2):
        served = data_service.distribute(
            input_pipeline.train_dataset_by_file(
                source,
                global_batch_size=2,
                stats=stats,
                seed=seed,
                first_step=36,
                input_context=tf.distribute.InputContext(2, pipeline, 2),
                num_epochs=2,
            ),  # fmt: skip
            address,
        )
        for x, y in served.as_numpy_iterator():
            epoch, f, r, label = expected[x[0].tobytes()]
            assert (epoch, f) in stream and r % 2 == pipeline and label == y[0]
            came.append((epoch, f, r))
    wanted = [(e, f, r) for _, (e, f, r, _) in expected.items() if (e, f) in stream]
    assert sorted(came) == sorted(wanted)


def test_a_tfds_dataset_is_read_by_file_through_the_service(cluster, tmp_path, stats):
    address, _ = cluster
    manual = str(tmp_path / "manual")
    tfds_sources_test.write_ilsvrc_tars(manual)
    source = tfds_sources.tfds_source("imagenet2012", str(tmp_path / "data"), manual_dir=manual)
    one_pass = input_pipeline.train_dataset_by_file(
        source, global_batch_size=1, stats=stats, seed=0, num_epochs=1
    )
    local = {x.tobytes(): int(y[0]) for x, y in one_pass.as_numpy_iterator()}
    served = data_service.distribute(one_pass, address).as_numpy_iterator()
    came = [(x.tobytes(), int(y[0])) for x, y in served]
    assert len(came) == source.num_train == 6 and set(came) == set(local.items())
    assert sorted(local.values()) == sorted(
        y for _, y in source.examples("train").as_numpy_iterator()
    )


def test_a_short_run_from_a_prepared_folder_through_the_service(cluster, tmp_path, prepared_root):
    address, workers = cluster
    cfg = tiny.train_config(
        tmp_path / "run", None, dataset=f"prepared:{prepared_root}", data_service=address
    )
    result = train.train(cfg)
    assert result["step"] == 6 and result["epoch"] == 1  # 48 images / batch 8
    assert np.isfinite(result["train"]["cross_entropy"])
    assert result["validation"]["count"] == 16
    assert result["checkpoint"].endswith("ckpt-6")
    assert all(worker.process.poll() is None for worker in workers)


def checkpoints(model_dir):
    return [
        int(re.search(r"ckpt-(\d+)\.index$", path).group(1))
        for path in glob.glob(os.path.join(model_dir, "checkpoints", "ckpt-*.index"))
    ]


def test_a_worker_killed_mid_run_does_not_stop_training(cluster, tmp_path, tiny_root):
    # 6 epochs of 6 steps; worker 0 is killed with SIGKILL after step 3. The trainer holds
    # at most about 18 batches the workers made before that (measured: the workers killed,
    # so many more came), so the other worker makes the rest after the kill.
    address, workers = cluster
    cfg = tiny.train_config(
        tmp_path / "run",
        tiny_root,
        data_service=address,
        epochs=6,
        checkpoint_every=1,
        log_every=100,
        input_timeout=60,  # a run that waits for the dead worker stops instead of hanging
    )
    killed_at = []

    def kill_after_step_3():
        deadline = time.monotonic() + 300
        while not killed_at and time.monotonic() < deadline:
            if max(checkpoints(cfg.model_dir), default=0) >= 3:
                workers[0].process.send_signal(signal.SIGKILL)
                killed_at.append(max(checkpoints(cfg.model_dir)))
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_after_step_3, daemon=True)
    watcher.start()
    result = train.train(cfg)
    watcher.join(timeout=5)
    assert killed_at, "the run ended before the worker was killed"
    assert workers[0].process.wait(timeout=30) == -signal.SIGKILL
    assert workers[1].process.poll() is None
    assert result["step"] == 36 and result["epoch"] == 6
    assert np.isfinite(result["train"]["cross_entropy"])
    assert 36 - killed_at[0] >= 30, killed_at
