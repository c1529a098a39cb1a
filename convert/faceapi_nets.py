"""TensorFlow rebuilds of the three face-api.js networks we ship.

The architectures follow the package's ``src/`` TypeScript (ssdMobilenetv1,
xception/TinyXception + ageGenderNet, faceFeatureExtractor + faceExpressionNet).
Each module takes float32 RGB pixels in 0..255 so that the input normalisation
lives inside the graph and the quantised model can accept raw uint8 pixels.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_BN_EPS = 0.0010000000474974513  # the epsilon face-api passes to tf.batchNorm
_FACE_MEAN_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)

DETECTOR_INPUT = 512
AGE_RANGE_YEARS = 110.0
# Layers kept in float in the "int8" files of age/gender and expression: with ranges calibrated on
# the pinned photos' young adults, int8 activations there clip on faces unlike them (babies reach
# 3-13x the calibrated maximum), which shifted gender toward female, costing some groups up to 11
# points, and lowered expression agreement for babies and the old (models/README.md).
FLOAT_TAIL_SCOPE = "float_tail"
FACE_INPUT = 112
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def _const(a: np.ndarray) -> tf.Tensor:
    return tf.constant(np.asarray(a, dtype=np.float32))


def _f64(tensors: tuple[tf.Tensor, ...]) -> tuple[tf.Tensor, ...]:
    return tuple(tf.cast(t, tf.float64) for t in tensors)


# Equalisation statistics are computed in float64 and rounded to float32 before use.
# TensorFlow's float32 CPU convolutions are not bit-reproducible across machines: the
# contraction is split along the reduction axis by thread count and cache sizes, and the
# oneDNN kernels picked at run time differ by instruction set (AVX2 / AVX-512), so the
# per-channel maxima came out ~1e-6 (threads) to ~1e-5 (ISA) apart in the last bits, which
# changed every equalised weight and hence the int8 files and their figures. float64 sums
# differ only by ~1e-15 relative, which rounding to float32 absorbs (barring a value that
# sits within that distance of a float32 rounding boundary).


class SsdMobilenetV1(tf.Module):
    """SSD MobileNetV1 face detector, up to (and excluding) box decoding.

    Outputs ``box_encodings`` [N, A, 4] (ty, tx, th, tw relative to the anchors
    in ``anchors`` as ymin, xmin, ymax, xmax) and ``scores`` [N, A] (sigmoid of
    the face logit). Decoding and NMS run in numpy on the device, where they
    cost well under a millisecond; quantising ``exp`` in-graph would cost accuracy.
    """

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        super().__init__(name="ssd_mobilenetv1")
        self._ranges: dict[int, np.ndarray] | None = None
        self.anchors = np.asarray(w["Output/extra_dim"][0], dtype=np.float32)
        self._pw: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}
        for prefix, count in (("MobilenetV1", 14), ("Prediction", 8)):
            for i in range(count):
                key = f"{prefix}/Conv2d_{i}_pointwise"
                self._pw[key] = (_const(w[f"{key}/weights"]), _const(w[f"{key}/convolution_bn_offset"]))
        self._dw: list[tuple[tf.Tensor, tf.Tensor]] = []
        for i in range(1, 14):
            key = f"MobilenetV1/Conv2d_{i}_depthwise"
            filters = w[f"{key}/depthwise_weights"]
            inv = w[f"{key}/BatchNorm/gamma"] / np.sqrt(w[f"{key}/BatchNorm/moving_variance"] + _BN_EPS)
            folded = filters * inv.reshape(1, 1, -1, 1)
            bias = w[f"{key}/BatchNorm/beta"] - w[f"{key}/BatchNorm/moving_mean"] * inv
            self._dw.append((_const(folded), _const(bias)))
        self._pred: list[tuple[tf.Tensor, ...]] = []
        for i in range(6):
            key = f"Prediction/BoxPredictor_{i}"
            # The class predictor emits (background, face, unused) per anchor; only the face
            # logit is used, so keep just those filters. Each head then gets its own
            # activation scale when quantised instead of one coarse scale shared by a concat.
            face = slice(1, None, 3)
            self._pred.append(
                (
                    _const(w[f"{key}/BoxEncodingPredictor/weights"]),
                    _const(w[f"{key}/BoxEncodingPredictor/biases"]),
                    _const(w[f"{key}/ClassPredictor/weights"][..., face]),
                    _const(w[f"{key}/ClassPredictor/biases"][face]),
                )
            )

    def _pointwise(self, x: tf.Tensor, key: str, stride: int) -> tf.Tensor:
        filters, offset = self._pw[key]
        return tf.clip_by_value(tf.nn.conv2d(x, filters, stride, "SAME") + offset, 0.0, 6.0)

    def _depthwise(self, x: tf.Tensor, idx: int, stride: int) -> tf.Tensor:
        filters, bias = self._dw[idx - 1]
        out = tf.clip_by_value(tf.nn.depthwise_conv2d(x, filters, [1, stride, stride, 1], "SAME") + bias, 0.0, 6.0)
        if self._ranges is not None:
            seen = np.max(out.numpy(), axis=(0, 1, 2))
            self._ranges[idx] = np.maximum(self._ranges.get(idx, seen), seen)
        return out

    def equalize(self, calibration: np.ndarray, target: float = 4.0) -> int:
        """Scale up narrow depthwise channels so the int8 activation grid covers them.

        Each depthwise output (after ReLU6) is one int8 tensor with a single scale set
        by its widest channels; channels that only reach, say, 0.3 get a handful of
        levels. Multiplying such a channel by k (its filter and bias) and dividing the
        pointwise weights that read it by k keeps the float function, provided the
        scaled channel stays under the ReLU6 ceiling: we scale a channel up to at most
        ``target`` (< 6) at its calibration maximum, leaving headroom, and never scale
        any channel down, so clipping only changes for inputs far outside calibration.
        """
        saved = self._pw, self._dw, self._pred
        self._pw = {key: _f64(t) for key, t in saved[0].items()}
        self._dw = [_f64(t) for t in saved[1]]
        self._pred = [_f64(t) for t in saved[2]]
        self._ranges = {}
        try:
            for i in range(len(calibration)):
                self(tf.constant(calibration[i : i + 1], tf.float64))
        finally:
            ranges, self._ranges = self._ranges, None
            self._pw, self._dw, self._pred = saved
        for idx, r64 in ranges.items():
            r = r64.astype(np.float32)  # see the note on float64 statistics above
            k = np.where(r > 1e-3, np.clip(target / np.maximum(r, 1e-6), 1.0, 32.0), 1.0).astype(np.float32)
            filters, bias = self._dw[idx - 1]
            self._dw[idx - 1] = (_const(filters.numpy() * k.reshape(1, 1, -1, 1)), _const(bias.numpy() * k))
            key = f"MobilenetV1/Conv2d_{idx}_pointwise"
            pw, offset = self._pw[key]
            self._pw[key] = (_const(pw.numpy() / k.reshape(1, 1, -1, 1)), offset)
        return len(ranges)

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        x = pixels / 127.5 - 1.0
        out = self._pointwise(x, "MobilenetV1/Conv2d_0_pointwise", 2)
        conv11 = out
        for idx in range(1, 14):
            out = self._depthwise(out, idx, 2 if idx in (2, 4, 6, 12) else 1)
            out = self._pointwise(out, f"MobilenetV1/Conv2d_{idx}_pointwise", 1)
            if idx == 11:
                conv11 = out
        feats = [conv11, out]
        cur = out
        for i in range(8):
            cur = self._pointwise(cur, f"Prediction/Conv2d_{i}_pointwise", 2 if i % 2 else 1)
            if i % 2:
                feats.append(cur)
        batch = pixels.shape[0] or tf.shape(pixels)[0]
        boxes, logits = [], []
        for feat, (bw, bb, cw, cb) in zip(feats, self._pred):
            boxes.append(tf.reshape(tf.nn.conv2d(feat, bw, 1, "SAME") + bb, [batch, -1, 4]))
            logits.append(tf.reshape(tf.sigmoid(tf.nn.conv2d(feat, cw, 1, "SAME") + cb), [batch, -1]))
        encodings = tf.concat(boxes, axis=1)
        scores = tf.concat(logits, axis=1)
        return {"box_encodings": encodings, "scores": scores}


class _SeparableConvs:
    """Weight access shared by the two face-crop networks."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        self._np = {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}
        self._w = {k: _const(v) for k, v in self._np.items()}
        self._ranges: dict[str, np.ndarray] | None = None

    def record_ranges(self) -> None:
        """Start recording per-channel |max| of every depthwise output (the next calls' inputs)."""
        self._ranges = {}

    def use_float64(self, on: bool) -> None:
        """Run the next calls in float64 (for equalisation statistics) or back in float32."""
        self._w = {k: tf.constant(v, tf.float64 if on else tf.float32) for k, v in self._np.items()}

    def equalize(self, strength: float = 0.5) -> int:
        """Cross-layer equalisation of each separable conv (depthwise -> pointwise).

        The depthwise output is an int8 tensor with one scale for all channels; a few
        wide channels make that scale coarse for the rest. Dividing depthwise channel c
        by s_c and multiplying the pointwise weights that read it by s_c leaves the
        float function unchanged (nothing non-linear sits between the two) while
        evening out the channel ranges. ``strength`` 1 equalises fully; 0.5 splits the
        range between activations and pointwise weights.
        """
        if not self._ranges:
            raise RuntimeError("record_ranges() and a forward pass are needed before equalize()")
        for prefix, seen in self._ranges.items():
            # Rounded to float32 (see the note on float64 statistics above), then worked in
            # float64 and rounded again, so that no numpy SIMD path can change a last bit.
            ranges = seen.astype(np.float32).astype(np.float64)
            med = float(np.median(ranges))
            # Dead or near-dead channels keep their weights; factors stay within [1/32, 32]
            # so no pointwise row grows large enough to coarsen its weight quantisation.
            s = np.where(ranges > 1e-3 * med, np.maximum(ranges, 1e-12) / med, 1.0) ** strength
            s = np.clip(s, 1 / 32, 32).astype(np.float32)
            self._np[f"{prefix}/depthwise_filter"] = self._np[f"{prefix}/depthwise_filter"] / s.reshape(1, 1, -1, 1)
            self._np[f"{prefix}/pointwise_filter"] = self._np[f"{prefix}/pointwise_filter"] * s.reshape(1, 1, -1, 1)
            for key in ("depthwise_filter", "pointwise_filter"):
                self._w[f"{prefix}/{key}"] = _const(self._np[f"{prefix}/{key}"])
        count = len(self._ranges)
        self._ranges = None
        return count

    def conv(self, x: tf.Tensor, prefix: str, stride: int) -> tf.Tensor:
        return tf.nn.conv2d(x, self._w[f"{prefix}/filters"], stride, "SAME") + self._w[f"{prefix}/bias"]

    def sep(self, x: tf.Tensor, prefix: str, stride: int) -> tf.Tensor:
        mid = tf.nn.depthwise_conv2d(x, self._w[f"{prefix}/depthwise_filter"], [1, stride, stride, 1], "SAME")
        if self._ranges is not None:
            seen = np.max(np.abs(mid.numpy()), axis=(0, 1, 2))
            self._ranges[prefix] = np.maximum(self._ranges.get(prefix, seen), seen)
        out = tf.nn.conv2d(mid, self._w[f"{prefix}/pointwise_filter"], 1, "VALID")
        return out + self._w[f"{prefix}/bias"]

    def fc(self, x: tf.Tensor, prefix: str) -> tf.Tensor:
        return tf.matmul(x, self._w[f"{prefix}/weights"]) + self._w[f"{prefix}/bias"]

    @staticmethod
    def normalise(pixels: tf.Tensor) -> tf.Tensor:
        mean = _FACE_MEAN_RGB if pixels.dtype == tf.float32 else tf.constant(_FACE_MEAN_RGB, pixels.dtype)
        return (pixels - mean) / 255.0


class _Equalizable(tf.Module):
    _l: _SeparableConvs

    def equalize(self, calibration: np.ndarray, strength: float = 0.5) -> int:
        """Equalise channel ranges using float64 activations on ``calibration`` pixels."""
        self._l.record_ranges()
        self._l.use_float64(True)
        try:
            for i in range(0, len(calibration), 16):
                self(tf.constant(calibration[i : i + 16], tf.float64))
        finally:
            self._l.use_float64(False)
        return self._l.equalize(strength)


class AgeGenderNet(_Equalizable):
    """TinyXception (2 main blocks) with age regression and gender softmax heads."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        super().__init__(name="age_gender")
        self._l = _SeparableConvs(w)

    def _reduction(self, x: tf.Tensor, prefix: str, activate_input: bool = True) -> tf.Tensor:
        out = tf.nn.relu(x) if activate_input else x
        out = self._l.sep(out, f"{prefix}/separable_conv0", 1)
        out = self._l.sep(tf.nn.relu(out), f"{prefix}/separable_conv1", 1)
        out = tf.nn.max_pool2d(out, 3, 2, "SAME")
        return out + self._l.conv(x, f"{prefix}/expansion_conv", 2)

    def _main(self, x: tf.Tensor, prefix: str) -> tf.Tensor:
        out = self._l.sep(tf.nn.relu(x), f"{prefix}/separable_conv0", 1)
        out = self._l.sep(tf.nn.relu(out), f"{prefix}/separable_conv1", 1)
        out = self._l.sep(tf.nn.relu(out), f"{prefix}/separable_conv2", 1)
        return out + x

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        x = self._l.normalise(pixels)
        out = tf.nn.relu(self._l.conv(x, "entry_flow/conv_in", 2))
        out = self._reduction(out, "entry_flow/reduction_block_0", activate_input=False)
        out = self._reduction(out, "entry_flow/reduction_block_1")
        out = self._main(out, "middle_flow/main_block_0")
        # The deep layers stay float in the int8 file (see FLOAT_TAIL_SCOPE): the scope names them.
        with tf.name_scope(FLOAT_TAIL_SCOPE):
            return self._tail(out)

    def _tail(self, out: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self._main(out, "middle_flow/main_block_1")
        out = self._reduction(out, "exit_flow/reduction_block")
        out = tf.nn.relu(self._l.sep(out, "exit_flow/separable_conv", 1))
        pooled = tf.reshape(tf.nn.avg_pool2d(out, 7, 2, "VALID"), [-1, 512])
        # The age head gets a second, constant unit (zero weights, bias AGE_RANGE_YEARS) that is
        # sliced away again: the float result is unchanged, but the int8 range of the head's
        # output then spans 0..AGE_RANGE_YEARS instead of the ages seen in calibration (the
        # pinned photos show young adults; calibrated alone, int8 ages saturated at 45).
        w = self._l._np["fc/age/weights"]
        b = self._l._np["fc/age/bias"]
        dtype = pooled.dtype.as_numpy_dtype  # float64 while equalising
        w2 = tf.constant(np.concatenate([w, np.zeros_like(w)], axis=1).astype(dtype))
        b2 = tf.constant(np.concatenate([b, np.full_like(b, AGE_RANGE_YEARS)]).astype(dtype))
        age = (tf.matmul(pooled, w2) + b2)[:, :1]
        gender = tf.nn.softmax(self._l.fc(pooled, "fc/gender"))  # [male, female]
        return {"age": age, "gender": gender}


class FaceExpressionNet(_Equalizable):
    """Dense-block feature extractor with a 7-way expression softmax."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        super().__init__(name="face_expression")
        self._l = _SeparableConvs(w)

    def _dense4(self, x: tf.Tensor, prefix: str, first: bool = False) -> tf.Tensor:
        if first:
            out1 = tf.nn.relu(self._l.conv(x, f"{prefix}/conv0", 2))
        else:
            out1 = tf.nn.relu(self._l.sep(x, f"{prefix}/conv0", 2))
        out2 = self._l.sep(out1, f"{prefix}/conv1", 1)
        out3 = self._l.sep(tf.nn.relu(out1 + out2), f"{prefix}/conv2", 1)
        out4 = self._l.sep(tf.nn.relu(out1 + (out2 + out3)), f"{prefix}/conv3", 1)
        return tf.nn.relu(out1 + (out2 + (out3 + out4)))

    def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        x = self._l.normalise(pixels)
        out = self._dense4(x, "dense0", first=True)
        out = self._dense4(out, "dense1")
        # As in age/gender, the deep blocks stay float in the "int8" file (see FLOAT_TAIL_SCOPE).
        with tf.name_scope(FLOAT_TAIL_SCOPE):
            for name in ("dense2", "dense3"):
                out = self._dense4(out, name)
            pooled = tf.reshape(tf.nn.avg_pool2d(out, 7, 2, "VALID"), [-1, 256])
            return {"expression": tf.nn.softmax(self._l.fc(pooled, "fc"))}
