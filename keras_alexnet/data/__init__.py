"""The data: where images come from, the paper's preprocessing, and the input pipelines.

- `sources`: the `Source` of (encoded image, label) pairs and the order of an epoch;
  `folder_sources` (image folders) and `tfds_sources` (TFDS datasets) make them.
- `image_files`, `bad_images`: which files decode, and the ones that do not.
- `preprocessing`: the paper's 256x256 rescale, crops, flips and colour PCA.
- `pipelines`: the training and evaluation `tf.data` pipelines.
- `shards`, `shard_writer`: prepared 256x256 TFRecord shards, read and written.
- `stats`: the training set's mean image and colour PCA.
- `shapes`: the built-in set, generated, no download.
- `service`: input made on other machines (tf.data service).
- `input_timeout`: a training input that stops the run when no batch comes.
"""
