"""The explain tool's output: PNG files, explanations.json and one self-contained index.html.

The page shows what the paper's figure 4 shows, per image: the five most probable labels as
bars (the true label's bar red, as in the paper, when the image sits in a class folder),
the nearest reference images in fc7 distance, and beside the image its Grad-CAM map. The
pictures are inline base64 PNGs and the style sheet is inline: the page needs no other file
and no network.
"""

import base64
import html
import json
import os
import re

import numpy as np
import tensorflow as tf

PAGE = "index.html"
RESULTS = "explanations.json"
IMAGES = "images"
THUMBNAIL = 113  # half the 227 patch
CAM_OPACITY = 0.5

_STYLE = """
body { font-family: sans-serif; margin: 16px; color: #222; background: #fafafa; }
h1 { font-size: 20px; margin: 0 0 4px 0; }
.note { color: #555; font-size: 13px; margin-bottom: 16px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px;
        margin-bottom: 14px; }
.name { font-weight: bold; font-size: 14px; margin-bottom: 8px; word-break: break-all; }
.row { display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }
figure { margin: 0; text-align: center; font-size: 12px; color: #444; }
figure img { display: block; border: 1px solid #ccc; image-rendering: auto; }
.bars { width: 330px; font-size: 13px; }
.bar-row { margin-bottom: 7px; }
.bar-label { display: flex; justify-content: space-between; }
.bar-track { background: #e6e6e6; height: 12px; border-radius: 2px; }
.bar { background: #3b6fb6; height: 12px; border-radius: 2px; }
.bar.true { background: #d62728; }
.truth { margin-top: 6px; font-size: 13px; }
.neighbours { margin-top: 10px; }
.neighbours .row { gap: 8px; }
.legend { font-size: 12px; color: #555; margin-top: 4px; }
"""


def colour_map(values):
    """Values in [0, 1] as RGB in [0, 1], blue (low) through green and yellow to red (high)."""
    x = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], np.float32)  # red, green, blue
    return np.clip(1.5 - np.abs(4.0 * x - 4.0 * centres), 0.0, 1.0)


def overlay(pixels, cam, opacity=CAM_OPACITY):
    """An image with a [0, 1] heat map laid over it: uint8 [h, w, 3]."""
    blended = (1 - opacity) * np.asarray(pixels, np.float32) + opacity * 255.0 * colour_map(cam)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def png(pixels):
    """The PNG file bytes of a uint8 [h, w, 3] image."""
    return tf.io.encode_png(np.asarray(pixels, np.uint8)).numpy()


def thumbnail(pixels, size=THUMBNAIL):
    """A uint8 image resized to size x size (area-averaged)."""
    small = tf.image.resize(np.asarray(pixels, np.float32), [size, size], antialias=True)
    return np.clip(np.round(small.numpy()), 0, 255).astype(np.uint8)


def _data_uri(png_bytes):
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def _file_stem(index, path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"{index:04d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)[:60]}"


def check_output_dir(output_dir):
    """Refuses an output folder that holds files already: nothing written is overwritten.

    Raises:
        ValueError: output_dir is a file, or a folder that is not empty.
    """
    if os.path.isfile(output_dir) or (os.path.isdir(output_dir) and os.listdir(output_dir)):
        raise ValueError(
            "output_dir must be a new or empty folder (nothing already there is "
            f"overwritten). Received: output_dir={output_dir}"
        )


def write(output_dir, explanations, references=None, title="", skipped=()):
    """Writes the PNGs, explanations.json and index.html of explained images.

    Args:
        output_dir: a new or empty folder.
        explanations: a list of `explanations.Explanation`.
        references: (paths, uint8 pictures, fc7 vectors) of the neighbours' folder, or None.
        title: what the page says it shows (the model and where it comes from).
        skipped: (path, reason) of files that did not decode, listed on the page.

    Returns:
        The path of index.html.
    """
    check_output_dir(output_dir)
    os.makedirs(os.path.join(output_dir, IMAGES), exist_ok=True)
    records, cards = [], []
    ref_index = {} if references is None else {p: i for i, p in enumerate(references[0])}
    for i, item in enumerate(explanations):
        stem = _file_stem(i + 1, item.path)
        picture, heat = png(item.pixels), png(overlay(item.pixels, item.cam))
        files = {"image": f"{IMAGES}/{stem}.png", "gradcam": f"{IMAGES}/{stem}_gradcam.png"}
        for key, data in (("image", picture), ("gradcam", heat)):
            with open(os.path.join(output_dir, files[key]), "wb") as f:
                f.write(data)
        records.append(_record(item, files))
        neighbour_pictures = [
            (path, distance, png(thumbnail(references[1][ref_index[path]])))
            for path, distance in item.neighbours
        ]
        cards.append(_card(item, picture, heat, neighbour_pictures))
    with open(os.path.join(output_dir, RESULTS), "w") as f:
        json.dump(records, f, indent=1)
    page = os.path.join(output_dir, PAGE)
    with open(page, "w", encoding="utf-8") as f:
        f.write(_page(title, cards, references, skipped))
    return page


def _record(item, files):
    return {
        "path": item.path,
        "true_label": item.true_label,
        "top5": [{"label": label, "probability": prob} for label, prob in item.top],
        "neighbours": [{"path": p, "distance": d} for p, d in item.neighbours],
        **files,
    }


def _bars(item):
    rows = []
    for label, prob in item.top:
        true = " true" if label == item.true_label else ""
        rows.append(
            f'<div class="bar-row"><div class="bar-label"><span>{html.escape(label)}</span>'
            f"<span>{prob:.2%}</span></div>"
            f'<div class="bar-track"><div class="bar{true}" style="width:{100 * prob:.2f}%">'
            "</div></div></div>"
        )
    if item.true_label is not None:
        where = (
            [label for label, _ in item.top].index(item.true_label) + 1
            if any(label == item.true_label for label, _ in item.top)
            else None
        )
        rank = f"rank {where} of the top {len(item.top)}" if where else "not in the top 5"
        rows.append(
            f'<div class="truth">true label: <b>{html.escape(item.true_label)}</b> ({rank})</div>'
        )
    return '<div class="bars">' + "".join(rows) + "</div>"


def _card(item, picture, heat, neighbour_pictures):
    name = os.path.join(os.path.basename(os.path.dirname(item.path)), os.path.basename(item.path))
    top_label = html.escape(item.top[0][0]) if item.top else ""
    parts = [
        '<div class="card">',
        f'<div class="name">{html.escape(name)}</div>',
        '<div class="row">',
        f'<figure><img class="image" src="{_data_uri(picture)}" width="227" height="227" '
        f'alt="{html.escape(name)}"><figcaption>the model\'s input</figcaption></figure>',
        f'<figure><img class="gradcam" src="{_data_uri(heat)}" width="227" height="227" '
        f'alt="Grad-CAM"><figcaption>Grad-CAM of {top_label} on conv5</figcaption></figure>',
        _bars(item),
        "</div>",
    ]
    if neighbour_pictures:
        parts.append('<div class="neighbours"><div class="legend">nearest in fc7:</div>')
        parts.append('<div class="row">')
        for path, distance, data in neighbour_pictures:
            label = os.path.basename(os.path.dirname(path))
            parts.append(
                f'<figure class="neighbour"><img src="{_data_uri(data)}" width="{THUMBNAIL}" '
                f'height="{THUMBNAIL}" alt="{html.escape(os.path.basename(path))}" '
                f'title="{html.escape(path)}"><figcaption>{html.escape(label)}<br>'
                f"d = {distance:.1f}</figcaption></figure>"
            )
        parts.append("</div></div>")
    parts.append("</div>")
    return "".join(parts)


def _page(title, cards, references, skipped):
    notes = [
        "Bars: the five most probable labels; red: the true label (the image's class folder). "
        "Grad-CAM: where conv5 raises the top class's score (red high, blue low)."
    ]
    if references is not None:
        notes.append(
            f"Neighbours: the six of {len(references[0])} reference images nearest in fc7 "
            "(Euclidean distance), as in the paper's figure 4."
        )
    if skipped:
        notes.append(
            "Skipped (do not decode): "
            + "; ".join(f"{html.escape(p)} ({html.escape(r)})" for p, r in skipped)
        )
    note_html = "".join(f'<div class="note">{n}</div>' for n in notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>keras_alexnet explain: {html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>What the network sees: {html.escape(title)}</h1>{note_html}"
        + "".join(cards)
        + "</body></html>\n"
    )
