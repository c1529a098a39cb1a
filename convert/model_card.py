"""Write ``models/README.md`` from the manifest, so the card never disagrees with the files."""

from __future__ import annotations

from pathlib import Path

CARDS = {
    "detector": (
        "SSD MobileNetV1 face detector from face-api.js, trained on WIDER FACE. 512x512 input, 5118 anchors.",
        "WIDER FACE (as published by the face-api.js author).",
        "Faces under about 30 px in the 512 px network input (about 6% of the frame's longer side) are mostly "
        "missed; tight crops where the face fills the frame are missed too (pad such images into a larger canvas). "
        "Profile views, heavy occlusion and masks lower recall.",
    ),
    "detector_320": (
        "The detector's weights run at 320x320 with anchors regenerated for the smaller grids (2034), "
        "for devices where the 512 model is too slow.",
        "WIDER FACE (as published by the face-api.js author).",
        "Everything the 512 model has, and it loses small faces sooner: compare its recall with the "
        "detector's in the proof table (same reference faces).",
    ),
    "age_gender": (
        "TinyXception network from face-api.js: age regression in years and a male/female softmax.",
        "Not stated by the package; the face-api.js author describes training on UTK, FGNET, Chalearn, Wiki, "
        "IMDB and CACD faces.",
        "Age is biased toward the 20-40 range: children and people over 60 are estimated poorly. Gender is a "
        "binary appearance estimate, not a person's gender identity. Masks and extreme poses degrade both.",
    ),
    "expression": (
        "Dense-block CNN from face-api.js classifying neutral, happy, sad, angry, fearful, disgusted, surprised.",
        "Not stated by the package (the face-api.js author lists a mix of public and scraped face images).",
        "Posed expressions are recognised far better than subtle real ones; expression is not emotion. "
        "Low light and blur push predictions toward neutral.",
    ),
    "ethnicity": (
        "GEAR predictor (Human models): race with UTKFace's five labels, gender and seven age buckets. 198x198.",
        "UTKFace (per the upstream GEAR-Predictor project).",
        "OPT-IN ONLY and off by default: inferring ethnicity from faces is restricted or prohibited in some "
        "jurisdictions (EU AI Act, Art. 5(1)(g) for biometric categorisation), and the labels are coarse "
        "annotator categories. Accuracy is low (see the evaluation). The upstream package states neither the "
        "colour order nor the gender label order: RGB input and index 0 = male were checked against the "
        "utkface-dev labels (an evaluation set; nothing was calibrated or trained on it).",
    ),
    "face_mesh": (
        "MediaPipe Face Mesh (Human models' graph): its face-presence flag and its 468 landmarks, 192x192 "
        "crop with a quarter of the box around it. The flag is a second opinion on detector boxes that score "
        "in the SSD's weak size bands (`edge.face_check`); the eye line of the landmarks turns a tilted face "
        "upright before the attribute models (`edge.attributes.MIN_ROLL_DEG`). Its 18 PReLUs stay float32 in "
        "the int8 file (TF name scope `prelu`): XNNPACK runs PRELU only in float, and int8 PRELUs split the "
        "model into 19 partitions (21 ms a run on a 2-core Zen 1 against 6.5 ms).",
        "Not stated in the package; MediaPipe's model card for Face Mesh describes it.",
        "Trained on faces that fill a close crop; on crops enlarged from faces under about 20 px it says "
        "little, and it is asked only about boxes the detector scored 0.25-0.5 from 24 px up. Its roll "
        "reads about 0.6 of a tilt beyond 20 degrees (it expects upright crops): a face tilted 30 degrees "
        "is turned by about 18, which gave back most of what the tilt cost (models/README.md).",
    ),
    "person": (
        "MoveNet MultiPose (Human models' graph), cut before its keypoint post-processing: the person-centre "
        "heatmap and the box heads, 256x256 letterboxed frame, decoded in numpy (3x3 local maxima of the "
        "centre heatmap, at most 6 people, NMS at IoU 0.5; `edge_convert.person_nets`). Chosen over NanoDet by "
        'recall on the real clips, speed and int8 parity (evaluation section: "Choosing the person detector").',
        "COCO and Google's internal pose data (per the MoveNet model card); the package does not say.",
        "People seen from high above or cut off by the frame edge score low: in the development clip of a "
        "corridor filmed from above, about half of the person-frames reach 0.3 (the people in the other clips, "
        "level views, all of them). At most 6 people per frame.",
    ),
}


EVALUATION_MARKER = "<!-- evaluation: kept across conversions; produced by `edge eval` -->"


def group_lines(proof: dict) -> list[str]:
    """The per-group parity table (convert/parity.py): one row per capture condition."""
    rows = proof.get("groups")
    if not rows:
        return []
    output = next(iter(rows[0]["agreement"]))
    groups = list(dict.fromkeys(r["group"] for r in rows))
    cells: dict[str, dict[str, str]] = {}
    for r in rows:
        cells.setdefault(r["condition"], {})[r["group"]] = f"{100 * r['agreement'][output]:.1f} ({r['n']})"
    lines = [
        f"- Per group, int8 against float ({output} agreement %, n faces): jittered variants of the verification "
        "and screenshot faces, each estimated as the device does (views near a decision), re-rendered per capture "
        "condition and split by the "
        "float model's call; weakest: "
        f"{proof[f'weakest_group_{output}']}:",
        "",
        "  | condition | " + " | ".join(groups) + " |",
        "  |---|" + "---|" * len(groups),
    ]
    lines += [f"  | {c} | " + " | ".join(by.get(g, "-") for g in groups) + " |" for c, by in cells.items()]
    return lines


def write_model_card(manifest: dict, table: str, path: Path) -> None:
    """Regenerate the card; an evaluation section below the marker is carried over untouched."""
    kept = ""
    if path.exists() and EVALUATION_MARKER in path.read_text():
        kept = path.read_text().split(EVALUATION_MARKER, 1)[1]
    lines = [
        "# Models",
        "",
        "Generated by `python -m edge_convert` from the pinned npm sources; do not edit by hand.",
        "Each model ships as integer TFLite (uint8 pixel input, int8 weights and activations; age/gender and",
        "expression keep their last layers in float32, see below, the face mesh its PReLUs) and as float32.",
        "The runtime refuses any file whose sha256 differs from `manifest.json`.",
        "",
        "Verification uses images never used for calibration: face-api's demo sample2/4/6 and scikit-image's",
        "astronaut, with seeded geometric and photometric variants. Detector recall is measured against the",
        "faces the float rebuild finds in the original photos (the same counts as face-api.js), carried",
        "through every augmentation. Attribute agreement compares int8 with float32 as the device",
        "estimates: each face's outputs from its box, or averaged over its views (the box, the box shifted",
        "by 4% of its size left, right, up and down, and scaled by 4% up and down; `attributes.views`,",
        "default 7) where the box's own estimate lies near a decision (`edge.attributes.VIEW_MARGINS`).",
        "The `single_crop_` rows compare one crop per face; the `stress_` rows add greyscale, blur and",
        "harsh exposure. Neither carries a bar.",
        "",
        "How the int8 models meet the bars: a first full-integer conversion missed four of them",
        "(detector recall drop 1.1 points, gender 97.9%, expression 93.8%, ethnicity 93.8%). The",
        "quantisation debugger showed no single sensitive layer; weight-only int8 and int16",
        "activations both agreed 100%, so the loss was int8 activations. Three exact or",
        "near-exact rewrites of the float networks fixed it, with no op kept in float:",
        "",
        "- detector: only the face logit of each class head is computed, and each head's",
        "  sigmoid is applied before concatenation, so scores no longer share one coarse scale;",
        "  narrow depthwise channels are scaled up (to at most 4 of ReLU6's 6 at their",
        "  calibration maximum) with the inverse scale moved into the next pointwise conv.",
        "- age/gender and expression: cross-layer equalisation of every depthwise-pointwise",
        "  pair (exact: nothing non-linear sits between them), strength 0.75.",
        "- ethnicity (GEAR): each BatchNorm left as Mul+Add after a ReLU is folded into the next",
        "  VALID convolution or dense layer (exact, all scales positive).",
        "",
        "Those bars hold on the pinned photos' faces, young adults. On utkface-dev the fully integer",
        "age/gender model still moved gender toward female for faces unlike them, babies most, costing",
        "faces labelled asian male 11 points: int8 activations in the last layers clip (ranges calibrated on",
        "young adults; baby faces reach 3-13x the calibrated maximum). So age/gender runs main block 1, the",
        "exit flow and both heads in float32 (the TF name scope `float_tail`, selective quantisation; the",
        "input stays uint8 and the two outputs are float32): about 2 ms per face either way on x86-64, a",
        "1.5 MB file instead of 0.6 MB. Expression, whose int8 agreement was lowest for babies and the",
        "old (92.4% and 92.6% against 95.7% overall), keeps dense blocks 2 and 3 and its head in float32",
        "the same way (97.7% overall; 1.0 ms instead of 0.8 ms, 1.3 MB instead of 0.4 MB). Details, what",
        "else was tried, and the per-group table are in the evaluation section below.",
        "",
        "The calibration photos show only young women in good light. The detector also calibrates on",
        "close-ups made from them (each calibration face cropped loosely and set large on a plain or",
        "graded background, 6 per photo), which removed a bias of its int8 boxes on close faces and the",
        "extra scatter they had on black faces. Each model's per-group table (below) checks int8 against",
        "float on the verification faces and the package's two screenshots (14 men aged 39-84 among 16",
        "faces), which no model calibrates on.",
        "",
        "The float32 files are converted from the unmodified rebuilds. The equalisation statistics are",
        "computed in float64 and rounded to float32, so the int8 figures do not depend on the CPU's",
        "TensorFlow kernels or thread count (from float32 statistics, expression agreement moved",
        "between 94.5% and 95.3% from one kernel path to another). The files themselves may still",
        "differ in a few bytes: re-converted on an Intel machine, the detector's int8 file got another",
        "checksum with every proof figure unchanged (the committed one was made on an AMD machine).",
        "",
        "## Proof table",
        "",
        "```",
        table,
        "```",
        "",
    ]
    for key, entry in manifest["models"].items():
        what, data, limits = CARDS[key]
        src = entry["source"]
        lines += [
            f"## {key}{' (opt-in)' if entry.get('opt_in') else ''}",
            "",
            what,
            "",
            f"- Files: `{entry['file']}` ({entry['bytes']:,} bytes), float `{entry['float']['file']}`",
            f"- Source: `{src['package']}` `{src['path']}`, licence {src['license']}, upstream {src['upstream']}",
            f"- Upstream training data: {data}",
            f"- Input: {entry['input']['shape']} {entry['input']['dtype']} {entry['input']['colour']}; "
            f"{entry['input']['normalisation']}"
            + (f"; crop {entry['input']['crop']}" if "crop" in entry["input"] else ""),
            "- Outputs: "
            + "; ".join(
                f"`{k}` {v['meaning']}" + (f" {v['labels']}" if "labels" in v else "")
                for k, v in entry["outputs"].items()
            ),
            f"- Known limits: {limits}",
            *group_lines(entry["proof"]),
            "- Bars: "
            + ", ".join(
                f"{b['metric']} {b['op']} {b['limit']} ({'holds' if b['holds'] else 'MISSED'})" for b in entry["bars"]
            ),
            "",
        ]
    text = "\n".join(lines)
    if kept:
        text = text.rstrip("\n") + "\n\n" + EVALUATION_MARKER + kept
    path.write_text(text)
