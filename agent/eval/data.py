"""Evaluation inputs: COCO-format references and results (the project's JSONL/Parquet records or COCO results).

A result is matched to a reference image by, in order: the record's manifest ``id`` equal to the COCO image
``id`` (as text) or to its ``file_name``; then the base name of the record's ``source`` (or ``image.source``)
equal to the base name of ``file_name``. COCO results (``[{"image_id", "caption"}]``) match by ``image_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caption_agent.errors import CaptionAgentError


class EvalInputError(CaptionAgentError):
    fix = (
        "pass COCO references ({'images': [{'id', 'file_name'}], 'annotations': [{'image_id', 'caption'}]}) "
        "and results as the JSONL/Parquet written by `caption-agent batch caption` or a COCO results JSON "
        "([{'image_id', 'caption'}])."
    )


@dataclass
class RefImage:
    id: str
    file_name: str
    captions: list[str] = field(default_factory=list)
    sku: str | None = None  # the catalog product shown, for grounding precision/recall


@dataclass
class References:
    images: dict[str, RefImage]
    path: Path
    language: str = "en"  # language of the reference captions (COCO metrics only score results in it)
    image_dir: str = ""  # info.image_dir: where file_name is relative to, from the references' folder

    def image_path(self, ref: RefImage, images_dir: Path | None) -> Path:
        base = images_dir if images_dir is not None else self.path.parent / self.image_dir
        return (base / ref.file_name).resolve()


@dataclass
class EvalItem:
    """One caption to evaluate, with the request fields it was written for."""

    image_id: str | None  # None: no reference image matched
    text: str | None
    style: str | None
    locale: str
    status: str = "ok"
    record: dict[str, Any] = field(default_factory=dict)  # the project record; {} for COCO results
    source: str | None = None


def load_references(path: Path | str) -> References:
    """Read and check a COCO captions file. Image ids are compared as text."""
    path = Path(path)
    data = _read_json(path, "references")
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations"), list)
    ):
        raise EvalInputError(f"references {str(path)!r} is not COCO format: it needs 'images' and 'annotations' lists.")
    images: dict[str, RefImage] = {}
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise EvalInputError(f"references {str(path)!r}: images[{i}] needs 'id' and 'file_name'.")
        images[str(img["id"])] = RefImage(str(img["id"]), str(img["file_name"]), sku=img.get("sku"))
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("caption"), str) or not ann["caption"].strip():
            raise EvalInputError(f"references {str(path)!r}: annotations[{i}] needs a non-empty 'caption'.")
        ref = images.get(str(ann.get("image_id")))
        if ref is None:
            raise EvalInputError(
                f"references {str(path)!r}: annotations[{i}] names image_id "
                f"{ann.get('image_id')!r}, which is not in 'images'."
            )
        ref.captions.append(ann["caption"])
    empty = [r.id for r in images.values() if not r.captions]
    if not images or empty:
        raise EvalInputError(
            f"references {str(path)!r}: every image needs at least one caption (none for {empty[:5] or 'any image'})."
        )
    raw_info = data.get("info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    language = str(info.get("language", "en")).split("-")[0].lower()
    return References(images, path, language, str(info.get("image_dir", "")))


def load_results(
    path: Path | str, refs: References, *, style: str | None = None, locale: str = "en-US"
) -> list[EvalItem]:
    """Read results and match each to a reference image. ``style``/``locale`` apply where a result has none."""
    path = Path(path)
    if not path.exists():
        raise EvalInputError(f"results {str(path)!r} does not exist.")
    if path.suffix.lower() == ".json":
        data = _read_json(path, "results")
        if isinstance(data, list):
            return [_coco_item(i, row, refs, style, locale) for i, row in enumerate(data)]
        records: Any = [data]
    else:
        from caption_agent.records import read_records

        try:
            records = list(read_records(path))
        except (ValueError, UnicodeDecodeError) as exc:
            raise EvalInputError(f"results {str(path)!r} is not valid JSONL: {exc}") from exc
    return [_record_item(rec, refs, style, locale) for rec in records]


def _coco_item(i: int, row: Any, refs: References, style: str | None, locale: str) -> EvalItem:
    if not isinstance(row, dict) or "image_id" not in row or not isinstance(row.get("caption"), str):
        raise EvalInputError(f"COCO results entry {i} needs 'image_id' and a 'caption' string.")
    image_id = str(row["image_id"])
    return EvalItem(image_id if image_id in refs.images else None, row["caption"], style, locale)


def _record_item(rec: Any, refs: References, style: str | None, locale: str) -> EvalItem:
    if not isinstance(rec, dict) or "status" not in rec:
        raise EvalInputError(f"a results record is not a caption-agent record (no 'status'): {str(rec)[:120]!r}")
    source = rec.get("source") or (rec.get("image") or {}).get("source")
    return EvalItem(
        match_image(rec.get("id"), source, refs),
        rec.get("text"),
        rec.get("style") or style,
        rec.get("locale") or locale,
        str(rec["status"]),
        rec,
        source,
    )


def match_image(record_id: Any, source: str | None, refs: References) -> str | None:
    """The reference image id a record belongs to, or None (see the module docstring for the order)."""
    if record_id is not None:
        rid = str(record_id)
        if rid in refs.images:
            return rid
        for ref in refs.images.values():
            if rid == ref.file_name:
                return ref.id
    if source:
        name = Path(source).name
        for ref in refs.images.values():
            if Path(ref.file_name).name == name:
                return ref.id
    return None


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise EvalInputError(f"{what} {str(path)!r} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"{what} {str(path)!r} is not valid JSON: {exc}") from exc
