"""The tfjs graph loader's ops added for the person-detector candidates (issue #28): NanoDet's ONNX
export (Transpose, PadV2, ConcatV2, SplitV with its second output, LeakyRelu, SparseToDense) and
MoveNet's feature pyramid (Shape, Cast, ResizeBilinear), on a small hand-written graph against the
same computation in TensorFlow; a graph cut at an inner node, past an op the loader lacks; and a
chain deeper than Python's recursion limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from edge_convert.tfjs_graph import GraphModel, UnsupportedOp  # noqa: E402


def _node(name: str, op: str, inputs: list[str] = (), **attr: dict) -> dict:  # type: ignore[assignment]
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _write(tmp_path: Path, nodes: list[dict], consts: dict[str, np.ndarray], outputs: list[str]) -> Path:
    weights, data = [], b""
    for name, value in consts.items():
        dtype = "float32" if value.dtype == np.float32 else "int32"
        weights.append({"name": name, "shape": list(value.shape), "dtype": dtype})
        data += value.astype(np.float32 if dtype == "float32" else np.int32).tobytes()
        nodes.append(_node(name, "Const"))
    (tmp_path / "g.bin").write_bytes(data)
    spec = {
        "format": "graph-model",
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["g.bin"], "weights": weights}],
        "signature": {"outputs": {o: {"name": f"{o}:0"} for o in outputs}},
    }
    path = tmp_path / "g.json"
    path.write_text(json.dumps(spec))
    return path


def test_onnx_and_pyramid_ops_match_tensorflow(tmp_path: Path) -> None:
    shape4 = {"shape": {"dim": [{"size": "1"}, {"size": "4"}, {"size": "6"}, {"size": "3"}]}}
    nodes = [
        _node("x", "Placeholder", shape=shape4),
        _node("nchw", "Transpose", ["x", "perm"]),
        _node("zero_pads", "SparseToDense", ["idx", "pad_shape", "vals", "zero"]),
        _node("padded", "PadV2", ["nchw", "pads", "fill"]),
        _node("cat", "ConcatV2", ["padded", "padded", "axis1"]),
        _node("split", "SplitV", ["cat", "sizes", "axis1"], num_split={"i": "2"}),
        _node("leaky", "LeakyRelu", ["split:1"], alpha={"f": 0.1}),
        _node("nhwc", "Transpose", ["leaky", "perm_back"]),
        _node("hw", "Shape", ["nhwc"]),
        _node("hw2", "StridedSlice", ["hw", "b", "e", "s"]),
        _node("hw_f", "Cast", ["hw2"], DstT={"type": "DT_FLOAT"}),
        _node("hw_i", "Cast", ["hw_f"], DstT={"type": "DT_INT32"}),
        _node("size", "Mul", ["hw_i", "two"]),
        _node("up", "ResizeBilinear", ["nhwc", "size"], half_pixel_centers={"b": True}),
    ]
    consts = {
        "perm": np.array([0, 3, 1, 2], np.int32),
        "perm_back": np.array([0, 2, 3, 1], np.int32),
        "idx": np.zeros((0, 1), np.int32),
        "pad_shape": np.array([4], np.int32),
        "vals": np.zeros((0,), np.int32),
        "zero": np.array(0, np.int32),
        "pads": np.array([[0, 0], [0, 0], [1, 0], [0, 1]], np.int32),
        "fill": np.array(-1.0, np.float32),
        "axis1": np.array(1, np.int32),
        "sizes": np.array([4, 2], np.int32),
        "b": np.array([1], np.int32),
        "e": np.array([3], np.int32),
        "s": np.array([1], np.int32),
        "two": np.array([2], np.int32),
    }
    model = GraphModel(_write(tmp_path, nodes, consts, ["up", "split"]))
    x = np.random.default_rng(0).normal(size=(1, 4, 6, 3)).astype(np.float32)
    out = model(tf.constant(x))

    padded = tf.pad(tf.transpose(x, [0, 3, 1, 2]), [[0, 0], [0, 0], [1, 0], [0, 1]], constant_values=-1.0)
    cat = tf.concat([padded, padded], axis=1)
    nhwc = tf.transpose(tf.nn.leaky_relu(cat[:, 4:], 0.1), [0, 2, 3, 1])
    up = tf.compat.v1.image.resize_bilinear(nhwc, [10, 14], half_pixel_centers=True)
    np.testing.assert_allclose(out["up"].numpy(), up.numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["split"].numpy(), cat[:, :4].numpy())  # ":0" of a two-output op
    # In a tf.function with a fixed input shape (how the converter traces it) as well.
    traced = tf.function(lambda t: model(t)["up"], input_signature=[tf.TensorSpec([1, 4, 6, 3], tf.float32)])
    np.testing.assert_allclose(traced(tf.constant(x)).numpy(), up.numpy(), rtol=1e-6)


def test_a_cut_graph_skips_what_lies_past_its_outputs(tmp_path: Path) -> None:
    shape = {"shape": {"dim": [{"size": "1"}, {"size": "3"}]}}
    nodes = [
        _node("x", "Placeholder", shape=shape),
        _node("inner", "Mul", ["x", "k"]),
        _node("post", "TopKV2", ["inner", "k_top"]),
    ]
    consts = {"k": np.array([2.0, 3.0, 4.0], np.float32), "k_top": np.array(1, np.int32)}
    path = _write(tmp_path, nodes, consts, ["post"])
    with pytest.raises(UnsupportedOp, match="TopKV2"):
        GraphModel(path)
    model = GraphModel(path, outputs={"scaled": "inner"})
    np.testing.assert_allclose(model(tf.ones([1, 3]))["scaled"].numpy(), [[2.0, 3.0, 4.0]])


def test_a_chain_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    depth = 3000  # NanoDet's export nests about 600 deep in a trace; Python stops at 1000 frames
    nodes = [_node("x", "Placeholder", shape={"shape": {"dim": [{"size": "1"}]}})]
    nodes += [_node(f"n{i}", "AddV2", [f"n{i - 1}" if i else "x", "one"]) for i in range(depth)]
    model = GraphModel(_write(tmp_path, nodes, {"one": np.array([1.0], np.float32)}, [f"n{depth - 1}"]))
    assert model(tf.zeros([1]))[f"n{depth - 1}"].numpy().tolist() == [float(depth)]
