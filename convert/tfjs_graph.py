"""A small loader for TensorFlow.js *graph* models.

tfjs graph models are frozen GraphDefs that went through grappler, so they
contain fused kernels (``_FusedConv2D``, ``_FusedMatMul``, ...) that neither
``tf.raw_ops`` nor the TFLite converter accept. Rather than pull in a
converter with a large dependency tree, we re-emit every node as standard
TensorFlow ops (conv + bias + activation, matmul + bias + activation) inside
a ``tf.function``; the result converts to TFLite like any other graph.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from .tfjs_weights import load_weights_manifest


class UnsupportedOp(ValueError):
    """The graph uses an op this loader does not translate."""


def _s(attr: dict, key: str, default: str = "") -> str:
    value = attr.get(key, {}).get("s")
    return base64.b64decode(value).decode() if value is not None else default


def _ints(attr: dict, key: str) -> list[int]:
    return [int(i) for i in attr.get(key, {}).get("list", {}).get("i", [])]


def _fused_names(attr: dict) -> list[str]:
    return [base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]


# Name scope of every PReLU: a model can keep them float32 in its int8 file (``ModelDef.float_scope``).
PRELU_SCOPE = "prelu"


def _prelu(x: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """PReLU in the exact form Keras writes it (slopes shaped [1, 1, C] on images, negated slope
    times relu(-x), added), which the TFLite converter fuses into one PRELU op. Other forms stay
    five to seven ops: max/min rounds each to int8 (63% of faces kept their flag), relu(x) -
    alpha * relu(-x) leaves int8 RELUs outside XNNPACK. XNNPACK runs PRELU in float32 only, so a
    model keeps this scope float (``ModelDef.float_scope``) to stay in one XNNPACK partition."""
    with tf.name_scope(PRELU_SCOPE):
        if x.shape.rank == 4:
            alpha = tf.reshape(alpha, [1, 1, -1])
        return tf.nn.relu(x) + (-alpha) * tf.nn.relu(-x)


_ACTIVATIONS: dict[str, Callable[[tf.Tensor, dict], tf.Tensor]] = {
    "Relu": lambda x, a: tf.nn.relu(x),
    "Relu6": lambda x, a: tf.nn.relu6(x),
    "Elu": lambda x, a: tf.nn.elu(x),
    "Sigmoid": lambda x, a: tf.sigmoid(x),
    "Tanh": lambda x, a: tf.tanh(x),
    "LeakyRelu": lambda x, a: tf.nn.leaky_relu(x, float(a.get("leakyrelu_alpha", {}).get("f", 0.2))),
}


def _apply_fused(out: tf.Tensor, fused: list[str], args: list[tf.Tensor], attr: dict, node: str) -> tf.Tensor:
    """Unfold grappler's fused epilogue (BiasAdd / FusedBatchNorm, then an activation)."""
    for op in fused:
        if op == "BiasAdd":
            out = tf.nn.bias_add(out, args[0])
        elif op == "Prelu":  # its slopes follow the bias among the node's inputs
            out = _prelu(out, args[1])
        elif op == "FusedBatchNorm":
            scale, offset, mean, var = args[:4]
            eps = float(attr.get("epsilon", {}).get("f", 1e-3))
            out = (out - mean) * (scale / tf.sqrt(var + eps)) + offset
        elif op == "Add":
            out = out + args[-1]
        elif op in _ACTIVATIONS:
            out = _ACTIVATIONS[op](out, attr)
        else:
            raise UnsupportedOp(f"{node}: fused op {op!r} is not supported")
    return out


def _conv(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
    attr = node.get("attr", {})
    if _s(attr, "data_format", "NHWC") != "NHWC":
        raise UnsupportedOp(f"{node['name']}: only NHWC is supported")
    out = tf.nn.conv2d(
        inputs[0],
        inputs[1],
        strides=_ints(attr, "strides") or 1,
        padding=_s(attr, "padding", "VALID"),
        dilations=_ints(attr, "dilations") or None,
    )
    return _apply_fused(out, _fused_names(attr), inputs[2:], attr, node["name"])


def _depthwise(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
    attr = node.get("attr", {})
    out = tf.nn.depthwise_conv2d(
        inputs[0],
        inputs[1],
        strides=_ints(attr, "strides"),
        padding=_s(attr, "padding", "VALID"),
        dilations=(_ints(attr, "dilations") or [1, 1, 1, 1])[1:3],
    )
    return _apply_fused(out, _fused_names(attr), inputs[2:], attr, node["name"])


def _matmul(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
    attr = node.get("attr", {})
    out = tf.linalg.matmul(
        inputs[0],
        inputs[1],
        transpose_a=bool(attr.get("transpose_a", {}).get("b", False)),
        transpose_b=bool(attr.get("transpose_b", {}).get("b", False)),
    )
    return _apply_fused(out, _fused_names(attr), inputs[2:], attr, node["name"])


def _pool(fn: Callable) -> Callable[[dict, list[tf.Tensor]], tf.Tensor]:
    def run(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
        attr = node.get("attr", {})
        return fn(inputs[0], _ints(attr, "ksize"), _ints(attr, "strides"), _s(attr, "padding", "VALID"))

    return run


def _reduce(fn: Callable) -> Callable[[dict, list[tf.Tensor]], tf.Tensor]:
    def run(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
        keep = bool(node.get("attr", {}).get("keep_dims", {}).get("b", False))
        return fn(inputs[0], axis=inputs[1], keepdims=keep)

    return run


_SLICE_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def _strided_slice(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
    attr = node.get("attr", {})
    masks = {k: int(attr.get(k, {}).get("i", 0)) for k in _SLICE_MASKS}
    return tf.strided_slice(inputs[0], inputs[1], inputs[2], inputs[3], **masks)


def _resize_bilinear(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
    attr = node.get("attr", {})
    return tf.compat.v1.image.resize_bilinear(
        inputs[0],
        inputs[1],
        align_corners=bool(attr.get("align_corners", {}).get("b", False)),
        half_pixel_centers=bool(attr.get("half_pixel_centers", {}).get("b", False)),
    )


_CAST_TYPES = {"DT_FLOAT": tf.float32, "DT_INT32": tf.int32, "DT_INT64": tf.int64, "DT_BOOL": tf.bool}


def _cast(node: dict, inputs: list[tf.Tensor]) -> tf.Tensor:
    return tf.cast(inputs[0], _CAST_TYPES[node.get("attr", {}).get("DstT", {}).get("type", "DT_FLOAT")])


_OPS: dict[str, Callable[[dict, list[tf.Tensor]], tf.Tensor | list[tf.Tensor]]] = {
    "_FusedConv2D": _conv,
    "Conv2D": _conv,
    "FusedDepthwiseConv2dNative": _depthwise,
    "DepthwiseConv2dNative": _depthwise,
    "_FusedMatMul": _matmul,
    "MatMul": _matmul,
    "MaxPool": _pool(tf.nn.max_pool2d),
    "AvgPool": _pool(tf.nn.avg_pool2d),
    "Max": _reduce(tf.reduce_max),
    "Mean": _reduce(tf.reduce_mean),
    "Add": lambda n, i: i[0] + i[1],
    "AddV2": lambda n, i: i[0] + i[1],
    "Sub": lambda n, i: i[0] - i[1],
    "Mul": lambda n, i: i[0] * i[1],
    "Minimum": lambda n, i: tf.minimum(i[0], i[1]),
    "Maximum": lambda n, i: tf.maximum(i[0], i[1]),
    "RealDiv": lambda n, i: i[0] / i[1],
    "BiasAdd": lambda n, i: tf.nn.bias_add(i[0], i[1]),
    "Relu": lambda n, i: tf.nn.relu(i[0]),
    "Relu6": lambda n, i: tf.nn.relu6(i[0]),
    "Prelu": lambda n, i: _prelu(i[0], i[1]),
    "Pad": lambda n, i: tf.pad(i[0], i[1]),
    "Sigmoid": lambda n, i: tf.sigmoid(i[0]),
    "Softmax": lambda n, i: tf.nn.softmax(i[0]),
    "Reshape": lambda n, i: tf.reshape(i[0], i[1]),
    "Identity": lambda n, i: tf.identity(i[0]),
    "Tanh": lambda n, i: tf.tanh(i[0]),
    "ExpandDims": lambda n, i: tf.expand_dims(i[0], i[1]),
    "StridedSlice": _strided_slice,
    # MoveNet's feature pyramid (static shapes: Shape folds to a constant in a tf.function).
    "Cast": _cast,
    "Shape": lambda n, i: tf.shape(i[0]),
    "ResizeBilinear": _resize_bilinear,
    # NanoDet's ONNX export: NCHW kept through transposes, explicit pads, channel splits.
    "Transpose": lambda n, i: tf.transpose(i[0], i[1]),
    "PadV2": lambda n, i: tf.pad(i[0], i[1], constant_values=i[2]),
    "ConcatV2": lambda n, i: tf.concat(i[:-1], axis=i[-1]),
    "SplitV": lambda n, i: tf.split(i[0], i[1], axis=i[2]),
    "LeakyRelu": lambda n, i: tf.nn.leaky_relu(i[0], float(n.get("attr", {}).get("alpha", {}).get("f", 0.2))),
    "SparseToDense": lambda n, i: tf.raw_ops.SparseToDense(
        sparse_indices=i[0], output_shape=i[1], sparse_values=i[2], default_value=i[3]
    ),
}


class GraphModel(tf.Module):
    """A tfjs graph model re-expressed as standard TensorFlow ops.

    Calling it with the single input returns ``{signature_output_name: tensor}``, or, with
    ``outputs`` (``{key: node name}``), those inner nodes: a graph can be cut before its own
    post-processing, which then runs outside the model.
    """

    def __init__(self, model_json: Path, outputs: dict[str, str] | None = None) -> None:
        super().__init__(name=re.sub(r"\W", "_", model_json.stem))  # faceres-deep -> faceres_deep
        spec = json.loads(model_json.read_text())
        if spec.get("format") != "graph-model":
            raise ValueError(f"{model_json} is not a tfjs graph model (format={spec.get('format')!r})")
        self.meta = {k: spec.get(k) for k in ("generatedBy", "convertedBy")}
        self._nodes = {n["name"]: n for n in spec["modelTopology"]["node"]}
        self._np = load_weights_manifest(spec["weightsManifest"], model_json.parent)
        self.folded = self._fold_channel_affines()
        self._consts = {name: tf.constant(value) for name, value in self._np.items()}
        for name, node in self._nodes.items():
            if node["op"] == "Const" and name not in self._consts:
                raise ValueError(f"{model_json}: constant {name} has no weights")
        # Older exports keep the signature under userDefinedMetadata; some name outputs only.
        sig = spec.get("signature") or (spec.get("userDefinedMetadata") or {}).get("signature") or {}
        (placeholder,) = [n for n in self._nodes.values() if n["op"] == "Placeholder"]
        self.input_name = placeholder["name"]
        dims = placeholder.get("attr", {}).get("shape", {}).get("shape", {}).get("dim", [])
        self.input_shape = [int(d["size"]) for d in dims]
        if outputs is not None:
            self.outputs = dict(outputs)
        elif sig.get("outputs"):
            self.outputs = {key: v["name"].split(":")[0] for key, v in sig["outputs"].items()}
        else:
            raise ValueError(f"{model_json}: no output signature")
        for name in self._reachable():
            if self._nodes[name]["op"] not in _OPS and self._nodes[name]["op"] not in ("Const", "Placeholder"):
                raise UnsupportedOp(f"{model_json}: node {name} uses unsupported op {self._nodes[name]['op']}")

    def _reachable(self) -> set[str]:
        """The nodes the outputs depend on (a cut graph leaves its post-processing out)."""
        seen: set[str] = set()
        todo = list(self.outputs.values())
        while todo:
            name = todo.pop().lstrip("^").partition(":")[0]
            if name not in seen:
                seen.add(name)
                todo.extend(self._nodes[name].get("input", []))
        return seen

    def _fold_channel_affines(self) -> int:
        """Fold per-channel ``x * a + b`` (Keras BatchNorm after an activation) into the
        next convolution or dense layer.

        Grappler leaves such a BatchNorm as a Mul and an Add; quantised, each is one more
        int8 requantisation. With every ``a > 0`` the affine commutes with the max-pools
        that follow it, and a VALID convolution or a dense layer absorbs it exactly:
        ``W' = W * a`` along the input channels and ``bias' = bias + sum(W * b)``.
        Returns how many were folded; anything that does not fit the pattern is left as is.
        """
        consumers: dict[str, list[dict]] = {}
        for node in self._nodes.values():
            for i in node.get("input", []):
                consumers.setdefault(i.split(":")[0], []).append(node)
        folded = 0
        for add in list(self._nodes.values()):
            if add["op"] not in ("Add", "AddV2") or len(add.get("input", [])) != 2:
                continue
            mul_name, b_name = add["input"]
            mul = self._nodes.get(mul_name)
            if mul is None or mul["op"] != "Mul" or b_name not in self._np:
                continue
            x_name, a_name = mul["input"]
            a, b = self._np.get(a_name), self._np[b_name]
            if a is None or a.ndim != 1 or b.shape != a.shape or not np.all(a > 0):
                continue
            targets: list[tuple[dict, int]] = []
            frontier, ok = [add["name"]], True
            while frontier and ok:
                name = frontier.pop()
                for node in consumers.get(name, []):
                    attr = node.get("attr", {})
                    if node["op"] == "MaxPool" or (
                        node["op"] == "Max" and sorted(self._np.get(node["input"][1], np.array([])).tolist()) == [1, 2]
                    ):
                        frontier.append(node["name"])
                    elif (
                        node["op"] == "_FusedConv2D"
                        and node["input"][0] == name
                        and _s(attr, "padding") == "VALID"
                        and _fused_names(attr)[:1] == ["BiasAdd"]
                    ):
                        targets.append((node, 2))
                    elif (
                        node["op"] == "_FusedMatMul"
                        and node["input"][0] == name
                        and not attr.get("transpose_b", {}).get("b", False)
                        and _fused_names(attr)[:1] == ["BiasAdd"]
                    ):
                        targets.append((node, 0))
                    else:
                        ok = False
            if not ok or not targets:
                continue
            for node, axis in targets:
                w_name, bias_name = node["input"][1], node["input"][2]
                w = self._np[w_name]
                shape = [1] * w.ndim
                shape[axis] = -1
                out_axes = tuple(i for i in range(w.ndim) if i != w.ndim - 1)
                self._np[bias_name] = (self._np[bias_name] + np.sum(w * b.reshape(shape), axis=out_axes)).astype(
                    np.float32
                )
                self._np[w_name] = (w * a.reshape(shape)).astype(np.float32)
            for node in consumers.get(add["name"], []):
                node["input"] = [x_name if i == add["name"] else i for i in node["input"]]
            folded += 1
        return folded

    def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        results: dict[str, tf.Tensor | list[tf.Tensor]] = {self.input_name: x}

        def value(ref: str) -> tf.Tensor:
            name, _, index = ref.lstrip("^").partition(":")
            out = self._consts[name] if name in self._consts else results[name]
            return out[int(index or 0)] if isinstance(out, list) else out  # SplitV gives several

        # Depth first without recursion: ONNX exports (NanoDet) chain thousands of nodes.
        todo = [n.partition(":")[0] for n in reversed(self.outputs.values())]
        while todo:
            name = todo[-1]
            if name in results or name in self._consts:
                todo.pop()
                continue
            node = self._nodes[name]
            refs = [i for i in node.get("input", []) if not i.startswith("^")]
            missing = [r.partition(":")[0] for r in refs]
            missing = [m for m in missing if m not in results and m not in self._consts]
            if missing:  # first input on top: ops are created in the order recursion created them,
                todo.extend(reversed(missing))  # so the converted files stay byte for byte the same
                continue
            results[name] = _OPS[node["op"]](node, [value(r) for r in refs])
            todo.pop()
        return {key: value(name) for key, name in self.outputs.items()}


def load_reference_outputs(model: GraphModel, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run the rebuilt graph eagerly; used to check the TFLite conversions."""
    return {k: v.numpy() for k, v in model(tf.constant(batch, dtype=tf.float32)).items()}
