"""The named pretrained weights, `AlexNet(weights="imagenet")`: what each name fetches.

Each entry is a public file with the facts its publisher states, and where: the URL, the
file's hash, its size, the variant and input normalisation it becomes, its published
accuracy and the protocol behind it, and its license. A fact the publisher does not state
is said to be missing, not guessed. `cache` fetches, verifies, converts and caches them.

Sources (read for this table):
- Caffe's model zoo readme for bvlc_alexnet, `models/bvlc_alexnet/readme.md` in
  github.com/BVLC/caffe: `caffemodel_url`, `sha1`, `license: unrestricted` ("This model is
  released for unrestricted use."), and "a top-1 accuracy 57.1% and a top-5 accuracy 80.2%
  on the validation set, using just the center crop". It states no file size.
- torchvision's `AlexNet_Weights.IMAGENET1K_V1` (torchvision/models/alexnet.py and its
  documentation page): the URL, acc@1 56.522 and acc@5 79.066 on ImageNet-1K, `_file_size`
  233.087 (MB, rounded: not an exact byte count). Its hash is the 8 hex digits in the file
  name, the start of the file's sha256 (torch.hub's `check_hash` compares that prefix);
  torchvision states no full hash. For licenses its documentation says only that "the
  pre-trained models provided in this library may have their own licenses or terms and
  conditions derived from the dataset used for training"; torchvision's code is
  BSD-3-Clause, and no license is stated for these weights.
"""

import dataclasses
import hashlib


@dataclasses.dataclass(frozen=True)
class Entry:
    """A named pretrained file.

    Attributes:
        name: the name `AlexNet(weights=...)` and the tools' --model take.
        aliases: other names for it ("imagenet").
        file_name: the publisher's file name; the cached file's and a mirror's too.
        url: where its publisher serves it.
        hash_algorithm: "sha1" or "sha256", as the publisher states the hash.
        file_hash: the hash as the publisher states it (hex); with hash_is_prefix, only
            its first digits.
        hash_is_prefix: whether the publisher states only the first digits of the hash.
        size: the file's size in bytes when its publisher states it exactly, else None
            (then only the hash is checked).
        size_note: the size as the publisher states it, or that it does not.
        format: the reader's format ("caffemodel" or "torch", `weight_files`).
        variant: the `AlexNet` variant it becomes.
        normalization: the input normalisation its weights need (inside the converted
            model, which takes raw 0-255 RGB; `preprocess_input(variant=...)` for a model
            built without it).
        accuracy: its published ILSVRC-2012 validation accuracy, with the protocol.
        license: its license, as its publisher states it.
        source: where these facts are stated.
    """

    name: str
    aliases: tuple
    file_name: str
    url: str
    hash_algorithm: str
    file_hash: str
    hash_is_prefix: bool
    size: int
    size_note: str
    format: str
    variant: str
    normalization: str
    accuracy: str
    license: str
    source: str

    def hash_matches(self, hex_digest):
        """Whether a file's hex digest (of `hash_algorithm`) is the one stated."""
        if self.hash_is_prefix:
            return hex_digest.startswith(self.file_hash)
        return hex_digest == self.file_hash

    def stated_hash(self):
        """The expected hash as a message states it, e.g. "sha1 9116a6..."."""
        if self.hash_is_prefix:
            return (
                f"{self.hash_algorithm} starting with {self.file_hash} (the publisher "
                "states only these digits)"
            )
        return f"{self.hash_algorithm} {self.file_hash}"

    def new_hash(self):
        """A fresh `hashlib` object of the entry's algorithm."""
        return hashlib.new(self.hash_algorithm)


ENTRIES = {
    entry.name: entry
    for entry in (
        Entry(
            name="bvlc_alexnet",
            aliases=("imagenet",),
            file_name="bvlc_alexnet.caffemodel",
            url="http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel",
            hash_algorithm="sha1",
            file_hash="9116a64c0fbe4459d18f4bb6b56d647b63920377",
            hash_is_prefix=False,
            size=None,
            size_note="not stated by Caffe's model zoo",
            format="caffemodel",
            variant="caffe",
            normalization="0-255 RGB minus the ILSVRC-2012 mean pixel (Caffe's)",
            accuracy="top-1 57.1%, top-5 80.2%, ILSVRC-2012 val, central crop",
            license='"released for unrestricted use"',
            source="Caffe's model zoo: models/bvlc_alexnet/readme.md in BVLC/caffe",
        ),
        Entry(
            name="torchvision_alexnet",
            aliases=("IMAGENET1K_V1",),
            file_name="alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            hash_algorithm="sha256",
            file_hash="7be5be79",
            hash_is_prefix=True,
            size=None,
            size_note="233.087 MB as torchvision states it (rounded)",
            format="torch",
            variant="one_weird_trick",
            normalization="x/255, minus torchvision's ImageNet mean, over its std (RGB)",
            accuracy="top-1 56.522%, top-5 79.066%, ImageNet-1K val (torchvision's recipe)",
            license="not stated for the weights (torchvision's code: BSD-3-Clause)",
            source="torchvision: AlexNet_Weights.IMAGENET1K_V1 (torchvision/models/alexnet.py)",
        ),
    )
}


def find(name):
    """The entry a name or an alias names, or None (a name is not a path)."""
    if not isinstance(name, str):
        return None
    for entry in ENTRIES.values():
        if name == entry.name or name in entry.aliases:
            return entry
    return None


def is_name(value):
    """Whether a weights= or --model value is one of the names (else it is a path)."""
    return find(value) is not None


def entry(name):
    """The entry of a name or an alias.

    Raises:
        ValueError: for an unknown name, listing the names.
    """
    found = find(name)
    if found is None:
        raise ValueError(f"no pretrained weights are named {name!r}; the names: {names()}")
    return found


def names():
    """Every name and alias, names first."""
    return [e.name for e in ENTRIES.values()] + [a for e in ENTRIES.values() for a in e.aliases]
