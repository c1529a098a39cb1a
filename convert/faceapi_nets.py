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
FACE_INPUT = 112
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def _const(a: np.ndarray) -> tf.Tensor:
    return tf.constant(np.asarray(a, dtype=np.float32))


class SsdMobilenetV1(tf.Module):
    """SSD MobileNetV1 face detector, up to (and excluding) box decoding.

    Outputs ``box_encodings`` [N, A, 4] (ty, tx, th, tw relative to the anchors
    in ``anchors`` as ymin, xmin, ymax, xmax) and ``scores`` [N, A] (sigmoid of
    the face logit). Decoding and NMS run in numpy on the device, where they
    cost well under a millisecond; quantising ``exp`` in-graph would cost accuracy.
    """

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        super().__init__(name="ssd_mobilenetv1")
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
        out = tf.nn.depthwise_conv2d(x, filters, [1, stride, stride, 1], "SAME") + bias
        return tf.clip_by_value(out, 0.0, 6.0)

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
        self._w = {k: _const(v) for k, v in w.items()}

    def conv(self, x: tf.Tensor, prefix: str, stride: int) -> tf.Tensor:
        return tf.nn.conv2d(x, self._w[f"{prefix}/filters"], stride, "SAME") + self._w[f"{prefix}/bias"]

    def sep(self, x: tf.Tensor, prefix: str, stride: int) -> tf.Tensor:
        out = tf.nn.separable_conv2d(
            x,
            self._w[f"{prefix}/depthwise_filter"],
            self._w[f"{prefix}/pointwise_filter"],
            [1, stride, stride, 1],
            "SAME",
        )
        return out + self._w[f"{prefix}/bias"]

    def fc(self, x: tf.Tensor, prefix: str) -> tf.Tensor:
        return tf.matmul(x, self._w[f"{prefix}/weights"]) + self._w[f"{prefix}/bias"]

    @staticmethod
    def normalise(pixels: tf.Tensor) -> tf.Tensor:
        return (pixels - _FACE_MEAN_RGB) / 255.0


class AgeGenderNet(tf.Module):
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
        for i in range(2):
            out = self._main(out, f"middle_flow/main_block_{i}")
        out = self._reduction(out, "exit_flow/reduction_block")
        out = tf.nn.relu(self._l.sep(out, "exit_flow/separable_conv", 1))
        pooled = tf.reshape(tf.nn.avg_pool2d(out, 7, 2, "VALID"), [-1, 512])
        age = tf.reshape(self._l.fc(pooled, "fc/age"), [-1, 1])
        gender = tf.nn.softmax(self._l.fc(pooled, "fc/gender"))  # [male, female]
        return {"age": age, "gender": gender}


class FaceExpressionNet(tf.Module):
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
        for name in ("dense1", "dense2", "dense3"):
            out = self._dense4(out, name)
        pooled = tf.reshape(tf.nn.avg_pool2d(out, 7, 2, "VALID"), [-1, 256])
        return {"expression": tf.nn.softmax(self._l.fc(pooled, "fc"))}
