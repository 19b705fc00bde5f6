"""Seeded mutations: generic byte-level ones, and structure-aware ones per format.

Every function takes the input and a :class:`random.Random` and returns the mutated input and a short name of
what was done (recorded with each case); nothing else is random, so a case is reproduced from its seed.

* bytes: bit flips, bytes set to 0 / 0xFF / random / "interesting" integers, truncation, insertion, deletion,
  duplication of ranges, appended garbage;
* ``.npz`` (model files, checkpoints): the JSON metadata edited (numbers made huge, negative, fractional or
  text, deep nesting, absurd architectures and network strings), zip members added, removed, swapped or
  renamed, ``.npy`` headers' shapes and dtypes changed (object, float16, text, structured ...), deflated
  members, sizes in the zip directory that lie, zip bombs;
* IDX: header dimensions, type code and rank, bodies shortened or lengthened, gzip wrapping of mutated bodies,
  gzip streams corrupted or concatenated, gzip bombs behind plausible headers;
* CIFAR-10 pickles: Python-level replacements (labels as a shared-reference DAG, huge or float lists, arrays
  of other dtypes and shapes, missing keys) dumped at protocols 2, 4 and 5, then opcode-level edits (lengths,
  inserted GLOBAL/REDUCE, deep MARK nesting, deleted, duplicated or swapped opcodes);
* images: PNG chunks (IHDR sizes with a correct CRC, bombs, extra chunks), JPEG markers (frame sizes),
  BMP headers (sizes, bit depth, compression), ``.npy`` headers;
* network strings: tokens deleted, duplicated, swapped or replaced, numbers made huge or zero, unicode,
  separators, many tokens.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import pickletools
import random
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

Mutation = tuple[bytes, str]

INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024, 4095, 4096, 32767, 32768,
               65535, 65536, 2**24, 2**31 - 1, 2**31, 2**32 - 1, 2**32 - 2, 2**16 + 1)


def pick(rng: random.Random, items: Any) -> Any:
    return items[rng.randrange(len(items))]


# -- bytes -------------------------------------------------------------------------------------------

def flip_bits(data: bytes, rng: random.Random) -> Mutation:
    if not data:
        return b"\x01", "flip(empty)"
    b = bytearray(data)
    n = rng.choice((1, 1, 2, 4, 8))
    for _ in range(n):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b), f"flip{n}"


def set_bytes(data: bytes, rng: random.Random) -> Mutation:
    if not data:
        return b"\xff", "set(empty)"
    b = bytearray(data)
    value = rng.choice((0, 0xFF, None))
    n = rng.choice((1, 1, 2, 4, 16))
    for _ in range(n):
        b[rng.randrange(len(b))] = rng.randrange(256) if value is None else value
    return bytes(b), f"set{n}={'rand' if value is None else hex(value)}"


def set_interesting(data: bytes, rng: random.Random) -> Mutation:
    width = rng.choice((1, 2, 4, 8))
    value = rng.choice(INTERESTING) % (1 << (8 * width))
    order = rng.choice(("<", ">"))
    raw = value.to_bytes(width, "little" if order == "<" else "big")
    if len(data) < width:
        return data + raw, f"int{width}{order}{value}@end"
    i = rng.randrange(len(data) - width + 1)
    return data[:i] + raw + data[i + width:], f"int{width}{order}{value}@{i}"


def truncate(data: bytes, rng: random.Random) -> Mutation:
    n = rng.randrange(len(data) + 1) if rng.random() < 0.7 else max(0, len(data) - rng.randint(1, 16))
    return data[:n], f"truncate{n}"


def insert_bytes(data: bytes, rng: random.Random) -> Mutation:
    i = rng.randrange(len(data) + 1)
    n = rng.choice((1, 4, 16, 256, 4096))
    fill = rng.choice(("rand", "zero", "ff"))
    raw = rng.randbytes(n) if fill == "rand" else (b"\x00" if fill == "zero" else b"\xff") * n
    return data[:i] + raw + data[i:], f"insert{n}{fill}@{i}"


def delete_range(data: bytes, rng: random.Random) -> Mutation:
    if not data:
        return data, "delete(empty)"
    i = rng.randrange(len(data))
    n = rng.randint(1, max(1, min(len(data) - i, rng.choice((1, 4, 64, 1024)))))
    return data[:i] + data[i + n:], f"delete{n}@{i}"


def duplicate_range(data: bytes, rng: random.Random) -> Mutation:
    if not data:
        return data, "dup(empty)"
    i = rng.randrange(len(data))
    n = rng.randint(1, min(len(data) - i, rng.choice((4, 64, 1024, 65536))))
    times = rng.choice((1, 1, 2, 16))
    j = rng.randrange(len(data) + 1)
    return data[:j] + data[i:i + n] * times + data[j:], f"dup{n}x{times}@{i}->{j}"


def append_garbage(data: bytes, rng: random.Random) -> Mutation:
    kind = rng.choice(("rand", "zero", "self"))
    n = rng.choice((1, 16, 1024, 65536))
    raw = rng.randbytes(n) if kind == "rand" else (bytes(n) if kind == "zero" else data[: n])
    return data + raw, f"append{len(raw)}{kind}"


BYTE_MUTATORS: tuple[Callable[[bytes, random.Random], Mutation], ...] = (
    flip_bits, flip_bits, set_bytes, set_interesting, set_interesting, truncate, insert_bytes, delete_range,
    duplicate_range, append_garbage,
)


def mutate_bytes(data: bytes, rng: random.Random, max_ops: int = 3) -> Mutation:
    """1 to ``max_ops`` byte-level mutations in a row."""
    names = []
    for _ in range(rng.randint(1, max_ops)):
        data, name = pick(rng, BYTE_MUTATORS)(data, rng)
        names.append(name)
    return data, "+".join(names)


# -- JSON values -----------------------------------------------------------------------------------

DEEP = "@@DEEP@@"
"""A placeholder string replaced by deeply nested JSON text after ``json.dumps`` (which cannot nest that deep)."""


def nested_text(depth: int, kind: str = "list") -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "{}" + "}" * depth


def absurd_json(rng: random.Random, refs: list[str] | None = None) -> Any:
    """An 'interesting' JSON value to put where another value was."""
    choice = rng.randrange(24)
    if choice == 0:
        return 10 ** rng.choice((10, 20, 30, 400))
    if choice == 1:
        return -rng.choice((1, 2, 2**31, 10**20))
    if choice == 2:
        return rng.choice((0, 1, 2, 3, 255, 256, 65535, 2**31 - 1, 2**31, 2**32, 2**63, 2**64))
    if choice == 3:
        return rng.choice((0.5, -0.0, 1e308, -1e308, 1e-308, 3.0, float("nan"), float("inf"), float("-inf")))
    if choice == 4:
        return rng.choice(("", "x", "float16", "object", "cnnkit-model-2", "cnnkit-checkpoint-1", "cnnkit-model-1", "é\u0301",
                           "\x00", "..", "/etc/passwd", "param/0.weight"))
    if choice == 5:
        return "x" * rng.choice((1000, 100_000, 1_000_000))
    if choice == 6:
        return rng.choice((None, True, False))
    if choice == 7:
        return rng.choice(([], {}, [[]], [{}], [None]))
    if choice == 8:
        return [rng.choice((0, 1, -1, 1.5, "a"))] * rng.choice((3, 1000, 100_000))
    if choice == 9:
        return {f"k{i}": i for i in range(rng.choice((1, 100, 10_000)))}
    if choice == 10:
        return DEEP + str(rng.choice((65, 100, 1000, 100_000))) + rng.choice(("list", "dict"))
    if choice == 11 and refs:
        return {"__array__": rng.choice(refs)}
    if choice == 12:
        return {"__array__": rng.choice((5, None, "nope", "__meta__", "", ["a"]))}
    if choice == 13:
        return {"ref": rng.choice(("", "0", "1", "0.body", "nope", 3))}
    if choice == 14:
        return rng.choice((["a", "b"], ["a"] * 3, [str(i) for i in range(1000)], [1, 2], ["x" * 2000] * 2))
    if choice == 15:
        return rng.choice(([8, 8, 1], [8, 8], [1], [0, 8, 1], [8, 8, 3], [2**31, 2**31, 1], [8, 8, 1, 1], [-8, 8, 1], [8.0, 8, 1]))
    if choice == 16:
        return {"mode": rng.choice(("scale", "mean_image", "per_channel", "none", "evil", 5))}
    if choice == 17:
        return {"mode": "mean_image", "mean": rng.choice(([[[0.0]]], [1, 2, 3], "abc", [[[float("nan")]]]))}
    if choice == 18:
        return {"optimizer": rng.choice(("SGD", "Adam", "X")), "lr": absurd_json(rng), "step": absurd_json(rng), "state": absurd_json(rng)}
    if choice == 19:
        return [{"epoch": rng.choice((1, -1, 10**9, 2**63)), "train_loss": absurd_json(rng)}] * rng.choice((1, 2, 1000))
    if choice == 20:
        return rng.choice((spec_absurd(rng), "relu"))
    if choice == 21:
        return architecture_absurd(rng)
    if choice == 22:
        return rng.choice((1, 2, 3, 100, 10**6, 10**9))
    return rng.choice((True, 0, "0", 1.0, [0]))


def json_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) in a JSON value, the root included (bounded for big lists)."""
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += json_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:50]):
            out += json_paths(v, (*path, i))
    return out


def get_path(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def set_path(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    parent = get_path(value, path[:-1])
    parent[path[-1]] = new
    return value


def dumps_json(value: Any) -> str:
    """JSON text, with :data:`DEEP` placeholders expanded into deep nesting."""
    text = json.dumps(value, sort_keys=False)
    marker = '"' + DEEP
    while marker in text:
        start = text.index(marker)
        end = text.index('"', start + 1)
        spec = text[start + len(marker):end]
        kind = "list" if spec.endswith("list") else "dict"
        depth = int(spec[: -len(kind)])
        text = text[:start] + nested_text(depth, kind) + text[end + 1:]
    return text


def mutate_json(value: Any, rng: random.Random, refs: list[str] | None = None) -> tuple[str, str]:
    """JSON text of ``value`` with one structural change; the change's name."""
    value = json.loads(json.dumps(value))
    paths = json_paths(value)
    kind = rng.randrange(10)
    path = pick(rng, paths)
    label = "/".join(map(str, path))[:60]
    if kind <= 4:
        new = absurd_json(rng, refs)
        return dumps_json(set_path(value, path, new)), f"json[{label}]={str(new)[:40]!r}"
    target = get_path(value, path)
    if kind == 5 and isinstance(target, dict) and target:
        key = rng.choice(list(target))
        del target[key]
        return dumps_json(value), f"json-del[{label}/{key}]"
    if kind == 6 and isinstance(target, dict):
        key = rng.choice(("__array__", "ref", "class", "config", "children", "format", "extra", "x" * 300, ""))
        target[key] = absurd_json(rng, refs)
        return dumps_json(value), f"json-add[{label}/{key[:20]}]"
    if kind == 7 and isinstance(target, list) and target:
        times = rng.choice((2, 100, 10_000))
        target.extend([target[0]] * times)
        return dumps_json(value), f"json-extend[{label}]x{times}"
    if kind == 8:
        depth = rng.choice((65, 200, 5000, 200_000))
        wrapped = DEEP + f"{depth}list"
        text = dumps_json(set_path(value, path, wrapped))
        return text, f"json-deep[{label}]{depth}"
    # text-level: duplicate keys, NaN tokens, comments, trailing garbage, BOM
    text = json.dumps(value)
    edit = rng.randrange(5)
    if edit == 0:
        return text[:-1] + ', "format": "x"}' if text.endswith("}") else text, "json-dupkey"
    if edit == 1:
        return text.replace("0", "NaN", 1), "json-nan"
    if edit == 2:
        return "\ufeff" + text, "json-bom"
    if edit == 3:
        return text + rng.choice(("x", "{}", "\x00", "  ")), "json-trailing"
    return text[: rng.randrange(len(text) + 1)], "json-cut"


def mutate_meta_targeted(meta: dict[str, Any], rng: random.Random, refs: list[str]) -> tuple[str, str]:
    """JSON text of a model file's or checkpoint's metadata with one edit aimed at what the reader must check
    against something else: the input shape against the network, the classes against its outputs, the
    statistics against the input, the optimiser's arrays against the parameters, the dtype against the arrays."""
    meta = json.loads(json.dumps(meta))
    edits: list[tuple[str, Callable[[], Any]]] = [
        ("input_shape", lambda: rng.choice(([8, 8, 2], [16, 16, 1], [4, 4, 1], [8, 8], [64], [1, 1, 1], [2**31, 2**31, 1],
                                            [8, 8, 3], [7, 8, 1], None))),
        ("classes", lambda: rng.choice((["a"], ["a", "b", "c"], [str(i) for i in range(1000)], ["a\nb", "c"], ["x" * 1001, "y"],
                                        [1, 2], "ab", None, ["dark", "dark"]))),
        ("dtype", lambda: rng.choice(("float64", "float16", "int32", None, 32))),
        ("format", lambda: rng.choice(("cnnkit-model-1", "cnnkit-model-2", "cnnkit-checkpoint-1", "cnnkit-model-3"))),
        ("spec", lambda: rng.choice((spec_absurd(rng), "conv3x3x1x4,relu,pool2,fc3", "fc2", 5, None))),
        ("epoch", lambda: rng.choice((0, 1, 2, 10**6, -1, 2**63, 1.5, "1", True, None))),
        ("stopped", lambda: rng.choice((True, 1, "yes", [], None))),
        ("callbacks", lambda: rng.choice(([{"best": float("nan")}], [[]], [{"wait": -5, "best": 1e308}], "x", [None] * 5))),
        ("records", lambda: rng.choice(([], [{"epoch": 1}], [{"epoch": 5, "train_loss": 1}], [{"epoch": "1"}], [1, 2],
                                        [{"epoch": i} for i in range(1000)]))),
    ]
    present = [e for e in edits if e[0] in meta] or edits
    name, value = rng.choice(present)
    kind = rng.randrange(4)
    if kind == 0 and "preprocess" in meta and isinstance(meta["preprocess"], dict):
        pre = meta["preprocess"]
        edit = rng.randrange(5)
        if edit == 0:
            pre["mode"] = rng.choice(("scale", "mean_image", "per_channel", "none", "x" * 3000, "a\nb"))
        elif edit == 1 and refs:
            pre[rng.choice(("mean", "std"))] = {"__array__": rng.choice(refs)}
        elif edit == 2:
            pre.pop(rng.choice(("mean", "std", "mode")), None)
        elif edit == 3:
            pre["mean"] = rng.choice(([[[0.0]]], [0.0, 0.0], [[[0.0] * 1] * 8] * 8, 3.0, "abc"))
        else:
            pre["std"] = rng.choice(([0.0], [float("inf")], [[1.0]], None))
        return dumps_json(meta), f"meta-preprocess{edit}"
    if kind == 1 and isinstance(meta.get("optimizer"), dict):
        opt = meta["optimizer"]
        edit = rng.randrange(5)
        if edit == 0:
            opt[rng.choice(("lr", "step"))] = rng.choice((float("inf"), float("nan"), -1, 0, 10**30, "0.1", None, [1]))
        elif edit == 1 and isinstance(opt.get("state"), dict) and opt["state"] and refs:
            entry = opt["state"][rng.choice(list(opt["state"]))]
            if isinstance(entry, dict) and entry:
                entry[rng.choice(list(entry))] = rng.choice(({"__array__": rng.choice(refs)}, 5, float("inf"), [0.0] * 3))
        elif edit == 2 and isinstance(opt.get("state"), dict):
            opt["state"][rng.choice(("nope", "0.weight", "", "4.bias"))] = rng.choice(({}, {"momentum_buffer": 1}, {"step": 2**70}))
        elif edit == 3:
            opt["optimizer"] = rng.choice(("SGD", "Adam", "RMSProp", "Evil"))
        else:
            opt["state"] = rng.choice(([], {}, None, "x"))
        return dumps_json(meta), f"meta-optimizer{edit}"
    if kind == 2 and isinstance(meta.get("architecture"), dict):
        nodes = [p for p in json_paths(meta["architecture"]) if p and p[-1] == "config"]
        if nodes:
            config = get_path(meta["architecture"], rng.choice(nodes))
            if isinstance(config, dict) and config:
                key = rng.choice(list(config))
                old = config[key]
                config[key] = rng.choice((old + 1 if isinstance(old, int) and not isinstance(old, bool) else 3, 0, -1, 2**31,
                                          not old if isinstance(old, bool) else True, [5, 5], None))
                return dumps_json(meta), f"meta-config[{key}]={config[key]!r}"[:80]
    new = value()
    meta[name] = new
    return dumps_json(meta), f"meta[{name}]={str(new)[:40]!r}"


# -- network strings --------------------------------------------------------------------------------

TOKENS = ("conv3x3x1x4", "conv5x5x1x20", "pool2", "maxpool3s2p1", "avgpool2", "relu", "sigmoid", "tanh", "bn",
          "dropout", "dropout0.3", "flatten", "fc10", "fc2", "conv1x1x4x4nobias", "conv3x3x4x8psame", "conv3x3x4x4s2p1d2")
NUMBERS = ("0", "1", "2", "00", "999999999", "9999999999", "4294967296", "2147483648", "65536", "100000", "-1", "1e3",
           "0x10", "٣", "３", "1_000", "", " 1", "+1", "99999")
UNICODE = ("ｃｏｎｖ3x3x1x4", "İ", "ß", "\u0301", "\x00", "\u202e", "\ufeff", "é", "😀", "\t", "\n", "\r\n", "\u00a0",
           "\u2028", "ﬀ", "K")  # the kelvin sign lower-cases to k


def random_token(rng: random.Random) -> str:
    kind = rng.randrange(8)
    n = lambda: pick(rng, NUMBERS) if rng.random() < 0.3 else str(rng.choice((1, 2, 3, 4, 5, 8, 16)))  # noqa: E731
    if kind == 0:
        opts = "".join(rng.choice(("s", "p", "d")) + n() if rng.random() < 0.8 else rng.choice(("psame", "nobias"))
                       for _ in range(rng.choice((0, 1, 2, 50))))
        return f"conv{n()}x{n()}x{n()}x{n()}{opts}"
    if kind == 1:
        return f"{rng.choice(('pool', 'maxpool', 'avgpool'))}{n()}" + (f"s{n()}" if rng.random() < 0.5 else "") + (
            f"p{n()}" if rng.random() < 0.5 else "")
    if kind == 2:
        return f"fc{n()}"
    if kind == 3:
        return f"dropout{rng.choice(('', '0', '0.5', '.5', '1', '1.0', '0.' + '9' * 50, 'nan', '-0.1'))}"
    if kind == 4:
        return rng.choice(("relu", "sigmoid", "tanh", "bn", "flatten", "RELU", "Relu", "softmax", "conv", "fc", "pool"))
    if kind == 5:
        return pick(rng, UNICODE)
    if kind == 6:
        return "".join(rng.choice("convxpsd0123456789,") for _ in range(rng.randint(1, 30)))
    return pick(rng, TOKENS)


def spec_absurd(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return ",".join(["relu"] * rng.choice((10_001, 100_000)))
    if kind == 1:
        return rng.choice(("conv99999x99999x1x1", "conv1x1x1x99999999", "fc999999999", "conv3x3x1x4p99999999",
                           "conv1x1x1x1d999999999", "pool999999999", "avgpool3s999999999"))
    if kind == 2:
        return "x" * rng.choice((100_001, 1_000_000))
    if kind == 3:
        return "conv3x3x1x4" + "s1" * rng.choice((1000, 30_000))
    if kind == 4:
        return ",".join(random_token(rng) for _ in range(rng.randint(1, 20)))
    if kind == 5:
        return "fc10," * 3000 + "fc10"
    if kind == 6:
        return ",".join(["fc4096"] * rng.choice((3, 30)))
    return rng.choice(("", " ", ",", ",,", "relu,", ",relu", "conv3x3x1x4;relu", "conv3x3x1x4\nrelu", "\x00"))


def mutate_spec(spec: str, rng: random.Random) -> tuple[str, str]:
    """A network string with one to three token-level changes."""
    names = []
    for _ in range(rng.randint(1, 3)):
        tokens = spec.split(",")
        kind = rng.randrange(11)
        i = rng.randrange(len(tokens))
        if kind == 0 and len(tokens) > 1:
            del tokens[i]
            names.append(f"del{i}")
        elif kind == 1:
            tokens.insert(i, tokens[i])
            names.append(f"dup{i}")
        elif kind == 2 and len(tokens) > 1:
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
            names.append(f"swap{i},{j}")
        elif kind == 3:
            tokens[i] = random_token(rng)
            names.append(f"tok{i}={tokens[i][:30]!r}")
        elif kind == 4:
            digits = [k for k, c in enumerate(tokens[i]) if c.isdigit()]
            if digits:
                k = rng.choice(digits)
                end = k
                while end < len(tokens[i]) and tokens[i][end].isdigit():
                    end += 1
                start = k
                while start > 0 and tokens[i][start - 1].isdigit():
                    start -= 1
                num = pick(rng, NUMBERS)
                tokens[i] = tokens[i][:start] + num + tokens[i][end:]
                names.append(f"num{i}={num!r}")
        elif kind == 5:
            tokens.insert(i, random_token(rng))
            names.append(f"ins{i}")
        elif kind == 6:
            sep = rng.choice((";", " ", "  ", "\t", "\n", ",,", ", ", "|", ""))
            spec = sep.join(tokens)
            names.append(f"sep{sep!r}")
            continue
        elif kind == 7:
            u = pick(rng, UNICODE)
            k = rng.randrange(len(tokens[i]) + 1)
            tokens[i] = tokens[i][:k] + u + tokens[i][k:]
            names.append(f"uni{i}")
        elif kind == 8:
            times = rng.choice((10, 1000, 10_001, 60_000))
            tokens = tokens + [rng.choice(("relu", "bn", "dropout", "fc2"))] * times
            names.append(f"many{times}")
        elif kind == 9:
            tokens[i] = tokens[i].upper() if rng.random() < 0.5 else tokens[i].swapcase()
            names.append(f"case{i}")
        else:
            spec = spec_absurd(rng)
            names.append("absurd")
            continue
        spec = ",".join(tokens)
    return spec, "+".join(names)


# -- architectures --------------------------------------------------------------------------------

LAYER_CLASSES = ("Conv2d", "ConvTranspose2d", "Linear", "ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh", "Softmax",
                 "LogSoftmax", "Softplus", "BatchNorm1d", "BatchNorm2d", "Dropout", "Flatten", "MaxPool2d", "AvgPool2d",
                 "LPPool2d", "MaxUnpool2d", "Upsample", "LocallyConnected2d", "Sequential", "Residual", "Concat",
                 "SoftmaxCrossEntropy", "MSELoss", "Loss", "Layer", "Container", "os.system", "", "conv2d", "Graph", "Add",
                 "Concatenate", "Identity", "GlobalAvgPool2d", "GlobalMaxPool2d", "Merge")
CONFIG_KEYS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "in_features",
               "out_features", "num_features", "eps", "momentum", "p", "scale_factor", "mode", "norm_type", "in_shape",
               "input_shape", "output_size", "negative_slope", "alpha", "num_parameters", "init", "dim", "beta", "threshold",
               "need_input_grad", "workspace_limit", "ceil_mode", "return_indices", "pool", "affine", "track_running_stats")


def config_value(rng: random.Random) -> Any:
    return rng.choice((0, 1, 2, 3, 4, 8, -1, 2**31, 10**12, 0.5, 1e308, float("nan"), float("inf"), "same", "valid", "x",
                       None, True, False, [3, 3], [0, 0], [2**40, 1], [8, 8, 1], [], {"ref": "0"}, {"ref": "9"}, "nearest",
                       "bilinear", [1, 2, 3, 4], [[1]], 10**400))


def random_layer(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    cls = pick(rng, LAYER_CLASSES)
    if cls in ("Sequential", "Concat") and depth < 3:
        return {"class": cls, "children": [[str(i), random_layer(rng, depth + 1)] for i in range(rng.randint(0, 3))]}
    if cls == "Residual" and depth < 3:
        return {"class": cls, "children": [["body", random_layer(rng, depth + 1)]]}
    config = {rng.choice(CONFIG_KEYS): config_value(rng) for _ in range(rng.randint(0, 5))}
    return {"class": cls, "config": config}


def graph_data(n: int, rng: random.Random) -> dict[str, Any]:
    """A Graph's architecture data: ``n`` nodes in a chain, some merging two earlier ones."""
    children, inputs = [], {}
    for i in range(n):
        merge = i > 1 and rng.random() < 0.3
        children.append([f"n{i}", {"class": "Add" if merge else "ReLU"}])
        inputs[f"n{i}"] = [f"n{i - 1}", f"n{rng.randrange(i - 1)}"] if merge else [f"n{i - 1}" if i else "input"]
    wiring: dict[str, Any] = {"input": "input", "output": f"n{n - 1}", "inputs": inputs}
    edit = rng.randrange(6)
    if edit == 1:
        wiring["inputs"][f"n{n - 1}"] = [f"n{n - 1}"]  # reads itself
    elif edit == 2:
        wiring["output"] = rng.choice(("nope", 5, "input", None))
    elif edit == 3:
        wiring["input"] = rng.choice(("n0", "", 7, "a.b"))
    elif edit == 4:
        wiring["inputs"]["n0"] = rng.choice(([], ["n5"], "input", [1], ["input"] * 1000))
    return {"class": "Graph", "children": children, "wiring": wiring}


def architecture_absurd(rng: random.Random) -> Any:
    kind = rng.randrange(9)
    if kind == 8:
        return graph_data(rng.choice((3, 50, 10_001, 100_001)), rng)
    if kind == 0:
        return {"class": "Sequential", "children": [[str(i), {"class": "ReLU"}] for i in range(rng.choice((10_001, 100_001)))]}
    if kind == 1:
        return DEEP + f"{rng.choice((70, 1000))}dict"
    if kind == 2:
        node: dict[str, Any] = {"class": "ReLU"}
        for _ in range(rng.choice((65, 70))):
            node = {"class": "Sequential", "children": [["0", node]]}
        return node
    if kind == 3:
        return {"class": "Conv2d", "config": {"in_channels": rng.choice((1, 99999, 2**31)), "out_channels": rng.choice((4, 99999, 2**31)),
                                              "kernel_size": rng.choice((3, 99999, [1, 2**40]))}}
    if kind == 4:
        return {"class": "Linear", "config": {"in_features": rng.choice((64, 10**6, 2**40)), "out_features": rng.choice((2, 10**6, 2**40))}}
    if kind == 5:
        return {"class": "Sequential", "children": [["0", {"ref": rng.choice(("", "0", "1"))}]]}
    if kind == 6:
        return {"class": "Sequential", "children": [[str(i), random_layer(rng)] for i in range(rng.randint(1, 5))]}
    return random_layer(rng)


# -- .npy and .npz ----------------------------------------------------------------------------------

def npy_bytes(header: str, body: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    """An ``.npy`` file from header text (a Python dict literal, written as is) and a body."""
    head = header.encode("latin1")
    fmt = "<H" if version == (1, 0) else "<I"
    pre = 10 if version == (1, 0) else 12
    pad = (-(pre + len(head) + 1)) % 64
    head = head + b" " * pad + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(head)) + head + body


def npy_split(data: bytes) -> tuple[str, bytes, tuple[int, int]]:
    """(header text, body, version) of an ``.npy`` file written by NumPy (a broken one: no header, all body)."""
    if len(data) < 12 or not data.startswith(b"\x93NUMPY"):
        return "", data, (1, 0)
    version = (data[6], data[7])
    if version == (1, 0):
        n = struct.unpack("<H", data[8:10])[0]
        start = 10
    else:
        n = struct.unpack("<I", data[8:12])[0]
        start = 12
    return data[start:start + n].decode("latin1").strip(), data[start + n:], version


def header_text(descr: str, fortran: Any, shape: Any) -> str:
    shown = descr if descr.startswith(("[", "{")) else repr(descr)
    return f"{{'descr': {shown}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def read_zip(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def write_zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED, level: int | None = None) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=compression, allowZip64=True, compresslevel=level) as zf:
        warnings.simplefilter("ignore")  # duplicate names are one of the mutations
        for name, data in members:
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            zf.writestr(info, data)
    return buf.getvalue()


def lie_about_sizes(data: bytes, rng: random.Random) -> Mutation:
    """Rewrite the uncompressed (and maybe compressed) size of one member in the zip's central directory
    and its local header: the archive then declares more (or less) than it holds."""
    b = bytearray(data)
    cd = [i for i in range(len(b) - 46) if b[i:i + 4] == b"PK\x01\x02"]
    if not cd:
        return data, "lie(no directory)"
    i = rng.choice(cd)
    value = rng.choice((0, 1, 2**20, 2**30, 2**31 - 1, 2**32 - 2))
    which = rng.choice(("usize", "csize", "both"))
    if which in ("usize", "both"):
        b[i + 24:i + 28] = struct.pack("<I", value)
    if which in ("csize", "both"):
        b[i + 20:i + 24] = struct.pack("<I", value)
    local = struct.unpack("<I", b[i + 42:i + 46])[0]
    if local + 26 <= len(b) and b[local:local + 4] == b"PK\x03\x04":
        if which in ("usize", "both"):
            b[local + 22:local + 26] = struct.pack("<I", value)
        if which in ("csize", "both"):
            b[local + 18:local + 22] = struct.pack("<I", value)
    return bytes(b), f"lie-{which}={value}"


NPY_DESCRS = ("|O", "<f2", ">f4", "<f8", "<c16", "<U10", "|S0", "|S4", "|V8", "<i8", "|b1", "<M8[s]", "<m8", "[('a', '<f4')]",
              "('<f4', (2,))", "float32", "'<f4'", "|u1", "<f16", "bogus", "<i2")
NPY_SHAPES = ("()", "(0,)", "(1,)", "(-1,)", "(2**40,)", "(1099511627776,)", "(4294967296, 4294967296)", "(1,) * 40",
              "(" + "1, " * 40 + ")", "(1.5,)", "('a',)", "None", "(3, 3, 1, 4)", "(4, 3, 3, 1)", "(0, 0)", "(True,)",
              "(8, 8, 1)", "(65536, 65536)", "(1 << 62,)", "(18446744073709551615,)")


def mutate_npy(data: bytes, rng: random.Random) -> Mutation:
    """One change to an ``.npy`` member: its header's dtype, shape, order or version, or its body."""
    header, body, version = npy_split(data)
    try:
        d = eval(header, {"__builtins__": {}})  # our own seed's header: a dict literal
    except Exception:
        d = {"descr": "<f4", "fortran_order": False, "shape": (len(body) // 4,)}
    descr, fortran, shape = str(d["descr"]), d["fortran_order"], d["shape"]
    kind = rng.randrange(9)
    if kind == 0:
        descr = pick(rng, NPY_DESCRS)
        return npy_bytes(header_text(descr, fortran, shape), body, version), f"npy-descr={descr}"
    if kind == 1:
        new = pick(rng, NPY_SHAPES)
        return npy_bytes(header_text(descr, fortran, new), body, version), f"npy-shape={new[:30]}"
    if kind == 2:
        fort = rng.choice(("True", "'yes'", "1", "None"))
        return npy_bytes(header_text(descr, fort, shape), body, version), f"npy-fortran={fort}"
    if kind == 3:
        v = rng.choice(((2, 0), (3, 0), (9, 9), (0, 0)))
        return npy_bytes(header_text(descr, fortran, shape), body, v), f"npy-version={v}"
    if kind == 4:
        new_shape = tuple(reversed(shape)) if isinstance(shape, tuple) else shape
        return npy_bytes(header_text(descr, fortran, new_shape), body, version), "npy-transpose"
    if kind == 5:
        text = rng.choice(("{'descr': __import__('os').system('true'), 'fortran_order': False, 'shape': (1,), }",
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1, }",
                           "{'descr': '<f4'}", "[1, 2]", "{" * 5000,
                           "{'descr': '<f4', 'fortran_order': False, 'shape': (" + "1," * 5000 + "), }",
                           "", "\x00" * 40))
        return npy_bytes(text, body, version), "npy-header-text"
    if kind == 6:
        if isinstance(shape, tuple) and shape:
            scale = rng.choice((2, 1000, 10**6))
            new_shape = (shape[0] * scale, *shape[1:])
            fill = rng.choice(("zeros", "short"))
            new_body = body * scale if fill == "zeros" and len(body) * scale <= 64 << 20 else body
            return npy_bytes(header_text(descr, fortran, new_shape), new_body, version), f"npy-scale{scale}{fill}"
        return data, "npy-scale(none)"
    if kind == 7:
        raw = bytearray(data)
        pos = 8  # the header length field
        raw[pos:pos + 2] = struct.pack("<H", rng.choice((0, 1, 0xFFFF, len(header) + 64)))
        return bytes(raw), "npy-hlen"
    mutated, name = mutate_bytes(body, rng, 2)
    return npy_bytes(header_text(descr, fortran, shape), mutated, version), f"npy-body:{name}"


def mutate_npz(data: bytes, rng: random.Random, meta_key: str = "__meta__.npy") -> Mutation:
    """One or two structure-aware changes to an ``.npz`` archive (model file or checkpoint), maybe followed by
    byte-level ones."""
    members = read_zip(data)
    names = []
    compression = zipfile.ZIP_STORED
    for _ in range(rng.choice((1, 1, 2))):
        try:
            kind = rng.randrange(14)
            arrays = [i for i, (n, _) in enumerate(members) if n != meta_key]
            meta_at = next((i for i, (n, _) in enumerate(members) if n == meta_key), None)
            if kind <= 4 and meta_at is not None:
                _header, body, _version = npy_split(members[meta_at][1])
                meta = json.loads(body.decode("utf-8"))
                refs = [n[:-4] for n, _ in members if n != meta_key]
                if isinstance(meta, dict) and rng.random() < 0.5:
                    text, name = mutate_meta_targeted(meta, rng, refs)
                else:
                    text, name = mutate_json(meta, rng, refs)
                raw = text.encode("utf-8", "surrogatepass")
                members[meta_at] = (meta_key, npy_bytes(header_text("|u1", False, (len(raw),)), raw))
                names.append(name)
            elif kind == 5 and arrays:
                i = rng.choice(arrays)
                mutated, name = mutate_npy(members[i][1], rng)
                members[i] = (members[i][0], mutated)
                names.append(f"{members[i][0]}:{name}")
            elif kind == 6:
                extra = rng.choice(("evil.txt", "../../evil.npy", "dir/", "param/extra.npy", meta_key, members[0][0], "/abs.npy",
                                    "a" * 300 + ".npy", "x.npy\x00.txt"))
                body = rng.choice((b"", _npy_of(np.zeros(3, np.float32)), b"hello"))
                members.append((extra, body))
                names.append(f"add:{extra[:30]!r}")
            elif kind == 7 and len(arrays) >= 2:
                i, j = rng.sample(arrays, 2)
                if rng.random() < 0.5:
                    members[i], members[j] = (members[i][0], members[j][1]), (members[j][0], members[i][1])
                    names.append("swap-bodies")
                else:
                    members[i], members[j] = members[j], members[i]
                    names.append("swap-order")
            elif kind == 8 and arrays:
                i = rng.choice(arrays)
                names.append(f"drop:{members[i][0]}")
                del members[i]
            elif kind == 9:
                compression = zipfile.ZIP_DEFLATED
                names.append("deflate")
            elif kind == 10 and arrays:
                # a zip bomb: one array grown to many zeros, stored deflated (what it holds is what it declares)
                i = rng.choice(arrays)
                _header, body, _version = npy_split(members[i][1])
                n = rng.choice((1 << 20, 16 << 20, 64 << 20))
                members[i] = (members[i][0], npy_bytes(header_text("|u1", False, (n,)), bytes(n)))
                compression = zipfile.ZIP_DEFLATED
                names.append(f"bomb{n}")
            elif kind == 11 and meta_at is not None:
                _header, body, _version = npy_split(members[meta_at][1])
                choice = rng.randrange(5)
                if choice == 0:
                    new = npy_bytes(header_text("<i4", False, (len(body) // 4,)), body[: len(body) // 4 * 4])
                elif choice == 1:
                    new = npy_bytes(header_text("|u1", False, (1, len(body))), body)
                elif choice == 2:
                    bad = b"\xff\xfe" + body
                    new = npy_bytes(header_text("|u1", False, (len(bad),)), bad)
                elif choice == 3:
                    big = ("[" + "[]," * rng.choice((10_000, 500_000)) + "[]]").encode()
                    raw = b'{"format": "cnnkit-model-2", "bloat": ' + big + b"}"
                    new = npy_bytes(header_text("|u1", False, (len(raw),)), raw)
                else:
                    raw = rng.choice((b"[]", b"null", b"1", b'"s"', b"{}", b'{"format": 1}'))
                    new = npy_bytes(header_text("|u1", False, (len(raw),)), raw)
                members[meta_at] = (meta_key, new)
                names.append(f"meta-member{choice}")
            elif kind == 12:
                many = 100_001 if rng.random() < 0.1 else rng.choice((10, 1000))
                members += [(f"m{i}.npy", b"") for i in range(many)]
                names.append(f"members{many}")
            else:
                names.append("resave")
        except (IndexError, ValueError, KeyError, TypeError, RecursionError, struct.error, zipfile.BadZipFile):
            names.append("skip")  # an earlier change left nothing this one can work on

    out = write_zip(members, compression)
    if rng.random() < 0.15:
        out, name = lie_about_sizes(out, rng)
        names.append(name)
    if rng.random() < 0.2:
        out, name = mutate_bytes(out, rng, 2)
        names.append(name)
    return out, "+".join(names)


def _npy_of(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


# -- IDX -----------------------------------------------------------------------------------------------

IDX_CODES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)


def mutate_idx(raw: bytes, rng: random.Random) -> Mutation:
    """A structure-aware change to uncompressed IDX bytes (header or body), then gzip or not."""
    b = bytearray(raw)
    ndim = b[3] if len(b) >= 4 else 1
    kind = rng.randrange(9)
    if kind == 0 and len(b) >= 4:
        b[2] = rng.choice((*IDX_CODES, 0, 0x0A, 0x0F, 0xFF))
        name = f"idx-type{b[2]:#x}"
    elif kind == 1 and len(b) >= 4:
        b[3] = rng.choice((0, 1, 2, 3, 4, 5, 255))
        name = f"idx-ndim{b[3]}"
    elif kind == 2 and len(b) >= 4 + 4 * ndim:
        d = rng.randrange(ndim)
        value = rng.choice((0, 1, 2, 7, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1))
        b[4 + 4 * d:8 + 4 * d] = struct.pack(">I", value)
        name = f"idx-dim{d}={value}"
    elif kind == 3 and len(b) >= 4 + 4 * ndim:
        # plausible header for a bigger array, body unchanged (short) or filled
        scale = rng.choice((2, 100, 10_000))
        n = struct.unpack(">I", b[4:8])[0] * scale
        b[4:8] = struct.pack(">I", min(n, 2**32 - 1))
        if rng.random() < 0.5 and len(b) * scale < 64 << 20:
            b += bytes((len(b) - 4 - 4 * ndim) * (scale - 1))
            name = f"idx-grow{scale}filled"
        else:
            name = f"idx-grow{scale}"
    elif kind == 4:
        b = bytearray(raw[: rng.randrange(len(raw) + 1)])
        name = f"idx-cut{len(b)}"
    elif kind == 5:
        b += bytes(rng.choice((1, 2, 1000)))
        name = "idx-trailing"
    elif kind == 6 and len(b) >= 4:
        # many dimensions of size 1 (or 0)
        n = rng.choice((3, 16, 255))
        dims = [1] * n if rng.random() < 0.7 else [0] + [2**32 - 1] * (n - 1)
        body = raw[4 + 4 * ndim:]
        b = bytearray(b[:3] + bytes([n]) + b"".join(struct.pack(">I", v) for v in dims) + body[: 1 if dims[0] else 0])
        name = f"idx-rank{n}"
    else:
        mutated, name = mutate_bytes(bytes(b), rng, 2)
        b = bytearray(mutated)
    return bytes(b), name


def gzip_bytes(data: bytes, rng: random.Random) -> Mutation:
    """``data`` gzip-compressed, sometimes with the stream damaged or doubled."""
    z = gzip.compress(data, compresslevel=rng.choice((1, 6, 9)), mtime=0)
    kind = rng.randrange(7)
    if kind == 0:
        return z, "gzip"
    if kind == 1:
        return z[: rng.randrange(len(z))], "gzip-cut"
    if kind == 2:
        return z[:-8] + bytes(8), "gzip-badcrc"
    if kind == 3:
        return z + z, "gzip-twice"
    if kind == 4:
        return z + rng.randbytes(rng.choice((1, 10, 100))), "gzip-trailing"
    if kind == 5:
        # FEXTRA / FNAME / FCOMMENT flags with odd contents
        head = bytearray(z[:10])
        head[3] |= rng.choice((0x04, 0x08, 0x10, 0x02, 0xE0))
        return bytes(head) + rng.choice((b"\xff\xff", b"name", b"")) + z[10:], "gzip-flags"
    mutated, name = mutate_bytes(z, rng, 2)
    return mutated, f"gzip+{name}"


def gzip_bomb(header: bytes, declared: int, actual: int) -> bytes:
    """A gzip stream: ``header`` (an IDX header declaring ``declared`` bytes) then ``actual`` zero bytes."""
    del declared
    co = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [co.compress(header)]
    chunk = bytes(1 << 20)
    left = actual
    while left > 0:
        n = min(left, len(chunk))
        parts.append(co.compress(chunk[:n]))
        left -= n
    parts.append(co.flush())
    return b"".join(parts)


# -- pickles (CIFAR-10 python batches) ------------------------------------------------------------------

def dag(depth: int) -> list:
    x: list = [0]
    for _ in range(depth):
        x = [x, x]
    return x


def mutate_batch_object(batch: dict, rng: random.Random) -> tuple[Any, str]:
    """A CIFAR-10 batch dict with one value replaced (what the unpickled data may hold)."""
    d = dict(batch)
    if "data" in d:  # a seed with str keys: mutate it the same way
        d = {k.encode() if isinstance(k, str) else k: v for k, v in d.items()}
    n = len(d.get(b"labels", [])) or 1
    kind = rng.randrange(16)
    if kind == 0:
        d[b"labels"] = dag(rng.choice((20, 30, 40, 60)))
        return d, "labels=dag"
    if kind == 1:
        d[b"labels"] = rng.choice(([0.5] * n, [2**70] * n, [-1] * n, [b"1"] * n, [[0]] * n, [None] * n, list(range(n + 1)),
                                   [True] * n, [10**9] * n, "abc", 5, None, {0: 1}, tuple(range(n))))
        return d, "labels=odd"
    if kind == 2:
        d[b"labels"] = np.array(d.get(b"labels", [0]), dtype=rng.choice((np.int8, np.uint64, np.float32, np.float16, np.bool_)))
        return d, "labels=array"
    if kind == 3:
        data = np.asarray(d.get(b"data"))
        dtype = rng.choice((np.float16, np.float32, np.int16, np.uint16, np.bool_, np.int64, object))
        d[b"data"] = data.astype(dtype) if dtype is not object else np.array([b"x"] * data.shape[0], dtype=object)
        return d, f"data-dtype={np.dtype(dtype).name}"
    if kind == 4:
        data = np.asarray(d.get(b"data"))
        shape = rng.choice(((n, 3071), (n * 3072,), (0, 3072), (n, 1, 3072), (), (n, 3072, 1)))
        d[b"data"] = np.zeros(shape, np.uint8) if shape != () else np.uint8(3)
        return d, f"data-shape={shape}"
    if kind == 5:
        d[b"data"] = np.asfortranarray(np.asarray(d[b"data"]))
        return d, "data-fortran"
    if kind == 6:
        d[b"data"] = np.asarray(d[b"data"]).astype(">u2")
        return d, "data-bigendian"
    if kind == 7:
        key = rng.choice(list(d))
        del d[key]
        return d, f"del-{key!r}"
    if kind == 8:
        d[rng.choice((b"extra", "labels", 5, (1, 2), None, b"x" * 1000))] = rng.choice((1, "s", [1] * 1000, {b"a": []}))
        return d, "add-key"
    if kind == 9:
        return rng.choice(([d], (d,), "batch", 7, None, [], {})), "not-a-dict"
    if kind == 10:
        x: Any = d
        for _ in range(rng.choice((63, 65, 100))):
            x = [x]
        return x, "deep-list"
    if kind == 11:
        d[b"filenames"] = [b"x" * 10_000] * n
        return d, "long-filenames"
    if kind == 12:
        d[b"labels"] = list(d.get(b"labels", [])) * rng.choice((1, 1000))
        return d, "labels-many"
    if kind == 13:
        d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
        return d, "str-keys"
    if kind == 14:
        d[b"data"] = bytes(np.asarray(d[b"data"]).tobytes())
        return d, "data=bytes"
    d[b"labels"] = [[0] * 2] * 20
    return d, "labels=2d"


def label_names_object(rng: random.Random) -> tuple[Any, str]:
    kind = rng.randrange(6)
    if kind == 0:
        return {b"label_names": [b"\xff\xfe"] * 10}, "names-nonutf8"
    if kind == 1:
        return {b"label_names": [b"c"] * rng.choice((2, 100_001))}, "names-many"
    if kind == 2:
        return {b"label_names": [1, 2, 3]}, "names-ints"
    if kind == 3:
        return {b"label_names": dag(30)}, "names-dag"
    if kind == 4:
        return {b"num_vis": 3072}, "names-missing"
    return {b"label_names": "abc"}, "names-str"


PICKLE_SNIPPETS = (
    b"cos\nsystem\n(S'true'\ntR",  # GLOBAL os.system + REDUCE
    b"cbuiltins\neval\n(X\x01\x00\x00\x001tR",
    b"\x8c\x08builtins\x8c\x04eval\x93",  # STACK_GLOBAL
    b"cnumpy\nndarray\n",
    b"cnumpy.core.multiarray\n_reconstruct\n",
    b"c__builtin__\nbytes\n)R",
    b"c_codecs\nencode\n(X\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8tR",
    b"(" * 100,
    b"]" * 100,
    b"(" * 60 + b"]" * 60 + b"e" * 60,
    b"}" + b"N" * 2 + b"s",
    b"\x8a\x08" + b"\xff" * 8,  # LONG1 of 8 bytes
    b"\x8b\xff\xff\xff\x7f",  # LONG4 huge length
    b"X\xff\xff\xff\x7f",  # BINUNICODE huge length
    b"B\xff\xff\xff\x7f",  # BINBYTES huge length
    b"\x8d" + b"\xff" * 8,  # BINUNICODE8 huge length
    b"\x8e" + b"\xff" * 8,  # BINBYTES8
    b"\x96" + b"\xff" * 8,  # BYTEARRAY8
    b"\x95" + b"\xff" * 8,  # FRAME
    b"h\xff",  # BINGET of nothing
    b"r\xff\xff\xff\x7f",  # LONG_BINPUT
    b"\x94",  # MEMOIZE
    b"P0\n",  # PERSID
    b"\x82\x01",  # EXT1
    b"i__main__\nX\n",  # INST
    b"\x81",  # NEWOBJ
    b"b",  # BUILD
    b"\x80\x09",  # PROTO 9
    b".",  # STOP early
    b"0",  # POP
    b"1",  # POP_MARK
    b"2",  # DUP
    b"F1.0\n", b"I99999999999999999999\n", b"L5L\n", b"S'x'\n", b"V\\u1234\n",  # text opcodes
    b"G\x7f\xf8\x00\x00\x00\x00\x00\x00",  # BINFLOAT nan
)


def pickle_ops(data: bytes) -> list[bytes]:
    """The raw bytes of each opcode of a (valid) pickle."""
    ops = list(pickletools.genops(data))
    out = []
    for k, (_, _, pos) in enumerate(ops):
        end = ops[k + 1][2] if k + 1 < len(ops) else len(data)
        out.append(data[pos:end])
    return out


def mutate_pickle_ops(data: bytes, rng: random.Random) -> Mutation:
    """One to three opcode-level edits of a valid pickle."""
    try:
        ops = pickle_ops(data)
    except Exception:
        return mutate_bytes(data, rng)
    names = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(8)
        i = rng.randrange(len(ops))
        if kind == 0 and len(ops) > 1:
            del ops[i]
            names.append(f"op-del{i}")
        elif kind == 1:
            ops.insert(i, ops[i] * rng.choice((1, 2, 100)))
            names.append(f"op-dup{i}")
        elif kind == 2 and len(ops) > 1:
            j = rng.randrange(len(ops))
            ops[i], ops[j] = ops[j], ops[i]
            names.append(f"op-swap{i},{j}")
        elif kind == 3:
            snippet = pick(rng, PICKLE_SNIPPETS)
            ops.insert(i, snippet)
            names.append(f"op-ins{i}:{snippet[:12]!r}")
        elif kind == 4:
            # change a length or argument field: the bytes after the opcode byte
            op = bytearray(ops[i])
            if len(op) > 1:
                k = rng.randrange(1, min(len(op), 9))
                op[k] = rng.choice((0, 0xFF, 0x7F, 0x80, op[k] ^ 1))
                ops[i] = bytes(op)
            names.append(f"op-arg{i}")
        elif kind == 5:
            ops[i] = ops[rng.randrange(len(ops))]
            names.append(f"op-replace{i}")
        elif kind == 6:
            n = rng.choice((65, 200, 10_000))
            ops.insert(i, b"(" * n)
            names.append(f"op-marks{n}")
        else:
            ops.insert(i, b"]" + b"]a" * rng.choice((100, 10_000, 200_000)))
            names.append("op-lists")
    return b"".join(ops), "+".join(names)


# -- images ------------------------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i + 8 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        out.append((data[i + 4:i + 8], data[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    c = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", c & 0xFFFFFFFF)


def png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return PNG_MAGIC + b"".join(png_chunk(k, b) for k, b in chunks)


def png_bomb(width: int, height: int, rows: int | None = None, depth: int = 8, color: int = 0) -> bytes:
    """A PNG declaring width x height whose IDAT holds ``rows`` rows (all when None) of zeros."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    row = 1 + (width * channels * depth + 7) // 8
    n = height if rows is None else rows
    co = zlib.compressobj(9)
    parts, line = [], bytes(row)
    block = line * max(1, (1 << 20) // row)
    per = len(block) // row
    left = n
    while left > 0:
        k = min(left, per)
        parts.append(co.compress(block[: k * row]))
        left -= k
    parts.append(co.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    chunks = [(b"IHDR", ihdr)]
    if color == 3:
        chunks.append((b"PLTE", bytes(3)))
    chunks += [(b"IDAT", b"".join(parts)), (b"IEND", b"")]
    return png_bytes(chunks)


def mutate_png(data: bytes, rng: random.Random) -> Mutation:
    chunks = png_chunks(data)
    kind = rng.randrange(11)
    if kind <= 2 and chunks and chunks[0][0] == b"IHDR":
        ihdr = bytearray(chunks[0][1])
        field = rng.choice(("w", "h", "wh", "depth", "color", "interlace", "filter"))
        if "w" in field:
            ihdr[0:4] = struct.pack(">I", rng.choice((0, 1, 9, 8000, 65535, 2**31 - 1, 2**32 - 1)))
        if "h" in field:
            ihdr[4:8] = struct.pack(">I", rng.choice((0, 1, 9, 8000, 65535, 2**31 - 1, 2**32 - 1)))
        if field == "depth":
            ihdr[8] = rng.choice((0, 1, 2, 4, 8, 16, 3, 32))
        if field == "color":
            ihdr[9] = rng.choice((0, 1, 2, 3, 4, 5, 6, 7))
        if field == "interlace":
            ihdr[12] = rng.choice((1, 2))
        if field == "filter":
            ihdr[11] = rng.choice((1, 5))
        chunks[0] = (b"IHDR", bytes(ihdr))
        return png_bytes(chunks), f"png-ihdr-{field}"
    if kind == 3:
        extra = rng.choice(((b"tEXt", b"k\x00" + b"v" * 100_000), (b"zTXt", b"k\x00\x00" + zlib.compress(bytes(50 << 20), 9)),
                            (b"iCCP", b"p\x00\x00" + zlib.compress(bytes(50 << 20), 9)),
                            (b"iTXt", b"k\x00\x01\x00\x00\x00" + zlib.compress(bytes(1 << 20))),
                            (b"eXIf", b"MM\x00*" + rng.randbytes(64)), (b"sPLT", b"p\x00\x08" + bytes(6000)), (b"XXXX", b"1"),
                            (b"tRNS", bytes(300)), (b"acTL", bytes(8)), (b"fcTL", bytes(26)), (b"PLTE", bytes(768))))
        chunks.insert(rng.randint(1, len(chunks)), extra)
        return png_bytes(chunks), f"png-chunk-{extra[0].decode()}"
    if kind == 4 and len(chunks) > 1:
        i = rng.randrange(len(chunks))
        del chunks[i]
        return png_bytes(chunks), f"png-drop{i}"
    if kind == 5:
        idat = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"]
        if idat:
            i = idat[0]
            body = chunks[i][1]
            parts = [(b"IDAT", body[j:j + 1]) for j in range(len(body))]
            chunks[i:i + 1] = parts
            return png_bytes(chunks), "png-idat-split"
    if kind == 6:
        w, h = rng.choice(((8000, 8000), (20000, 3000), (65535, 1000), (2**31 - 1, 1), (9000, 9000)))
        rows = rng.choice((None, 1, 10))
        depth, color = rng.choice(((8, 0), (1, 0), (8, 2), (16, 6), (8, 3)))
        return png_bomb(w, h, rows, depth, color), f"png-bomb{w}x{h}r{rows}d{depth}c{color}"
    if kind == 7:
        i = rng.randrange(len(chunks))
        raw = bytearray(png_bytes(chunks))
        return bytes(raw[:8]) + b"".join(
            png_chunk(k, b, crc=rng.randrange(2**32) if j == i else None) for j, (k, b) in enumerate(chunks)), f"png-crc{i}"
    if kind == 8:
        idat = [i for i, (k, _) in enumerate(chunks) if k == b"IDAT"]
        if idat:
            i = idat[0]
            try:
                raw = zlib.decompress(chunks[i][1])
            except zlib.error:
                raw = b""
            edit = rng.choice(("short", "long", "filters"))
            if edit == "short":
                raw = raw[: len(raw) // 2]
            elif edit == "long":
                raw = raw * 10
            else:
                raw = bytes(b if k % 9 else rng.randrange(256) for k, b in enumerate(raw))
            chunks[i] = (b"IDAT", zlib.compress(raw))
            return png_bytes(chunks), f"png-idat-{edit}"
    mutated, name = mutate_bytes(data, rng)
    return mutated, f"png+{name}"


def jpeg_segments(data: bytes) -> list[tuple[int, int]]:
    """(offset, marker) of the markers before the first scan."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        out.append((i, marker))
        if marker == 0xDA:
            break
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        i += 2 + n
    return out


def mutate_jpeg(data: bytes, rng: random.Random) -> Mutation:
    segs = jpeg_segments(data)
    sof = [o for o, m in segs if m in (0xC0, 0xC1, 0xC2)]
    kind = rng.randrange(6)
    b = bytearray(data)
    if kind <= 1 and sof:
        o = sof[0]
        h, w = rng.choice(((65535, 65535), (0, 8), (8, 0), (65500, 1), (8192, 8192), (9, 9), (1, 65535)))
        b[o + 5:o + 7] = struct.pack(">H", h)
        b[o + 7:o + 9] = struct.pack(">H", w)
        return bytes(b), f"jpeg-size{h}x{w}"
    if kind == 2 and sof:
        o = sof[0]
        b[o + 9] = rng.choice((0, 2, 4, 255))  # number of components
        return bytes(b), "jpeg-components"
    if kind == 3 and segs:
        o, m = rng.choice(segs)
        b[o + 2:o + 4] = struct.pack(">H", rng.choice((0, 1, 2, 0xFFFF)))
        return bytes(b), f"jpeg-len{m:#x}"
    if kind == 4:
        # cut the scan data, keep the end-of-image marker
        scan = next((o for o, m in segs if m == 0xDA), len(data) // 2)
        cut = rng.randrange(scan, len(data))
        return data[:cut] + b"\xff\xd9", "jpeg-cutscan"
    mutated, name = mutate_bytes(data, rng)
    return mutated, f"jpeg+{name}"


def mutate_bmp(data: bytes, rng: random.Random) -> Mutation:
    b = bytearray(data)
    if len(b) < 54:
        return mutate_bytes(data, rng)
    kind = rng.randrange(7)
    if kind == 0:
        w = rng.choice((0, 1, 8000, 2**31 - 1, -8, 65535))
        b[18:22] = struct.pack("<i", w)
        return bytes(b), f"bmp-w{w}"
    if kind == 1:
        h = rng.choice((0, 1, -8, 8000, 2**31 - 1, -(2**31)))
        b[22:26] = struct.pack("<i", h)
        return bytes(b), f"bmp-h{h}"
    if kind == 2:
        bpp = rng.choice((0, 1, 2, 4, 8, 16, 24, 32, 64, 65535))
        b[28:30] = struct.pack("<H", bpp)
        return bytes(b), f"bmp-bpp{bpp}"
    if kind == 3:
        comp = rng.choice((1, 2, 3, 4, 5, 6, 99))
        b[30:34] = struct.pack("<I", comp)
        return bytes(b), f"bmp-comp{comp}"
    if kind == 4:
        b[10:14] = struct.pack("<I", rng.choice((0, 14, 2**31, len(b) + 10)))
        return bytes(b), "bmp-offset"
    if kind == 5:
        b[46:50] = struct.pack("<I", rng.choice((2**31, 256, 2**16)))  # palette colours
        return bytes(b), "bmp-palette"
    mutated, name = mutate_bytes(data, rng)
    return mutated, f"bmp+{name}"


def bmp_rle_bomb(width: int, height: int) -> bytes:
    """An 8-bit RLE BMP declaring width x height whose data ends at once (end of bitmap)."""
    palette = bytes(4 * 256)
    pixels = b"\x00\x01"  # end of bitmap
    off = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", off + len(pixels), 0, 0, off) + info + palette + pixels


def mutate_image(data: bytes, fmt: str, rng: random.Random) -> Mutation:
    if rng.random() < 0.3:
        return mutate_bytes(data, rng)
    if fmt == "png":
        return mutate_png(data, rng)
    if fmt == "jpeg":
        return mutate_jpeg(data, rng)
    if fmt == "bmp":
        if rng.random() < 0.1:
            w, h = rng.choice(((8000, 8000), (16, 16), (65535, 1024)))
            return bmp_rle_bomb(w, h), f"bmp-rle-bomb{w}x{h}"
        return mutate_bmp(data, rng)
    if fmt == "npy":
        return mutate_npy(data, rng)
    return mutate_bytes(data, rng)


def dumps_pickle(obj: Any, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)
