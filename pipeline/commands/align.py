"""``align``, ``paste`` and ``bench align``: from an upload to an aligned face and back."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub, groups) -> None:
    p = sub.add_parser("align", help="find faces and crop one the way a model expects (also writes the transform)")
    p.add_argument("image", type=Path, help="photo (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    p.add_argument(
        "--model", default=None, help="registry model whose template and size to use (default: the default model)"
    )
    p.add_argument("--template", default=None, help="alignment template (default: the model's)")
    p.add_argument(
        "--size", type=int, default=None, help="output size in px (default: the model's, else the template's)"
    )
    p.add_argument("--face", type=int, default=0, help="which face, 0 = largest (see --list-faces)")
    p.add_argument("-o", "--out", type=Path, default=None, help="aligned face image (PNG)")
    p.add_argument("--transform", type=Path, default=None, help="transform JSON (default: --out with .json)")
    p.add_argument("--list-faces", action="store_true", help="print the faces found as JSON and stop")
    p.set_defaults(func=run_align)

    p = sub.add_parser("paste", help="blend an edited aligned face back into the full-resolution photo")
    p.add_argument("result", type=Path, help="edited face, in the frame written by align")
    p.add_argument("--into", "--photo", type=Path, required=True, help="the original photo")
    p.add_argument("--face", type=int, default=None, help="which face, 0 = largest (without --transform)")
    p.add_argument("--transform", type=Path, default=None, help="transform JSON written by align")
    p.add_argument("--model", default=None, help="without --transform: the model whose template to use (default model)")
    p.add_argument("--template", default=None, help="without --transform: the alignment template")
    p.add_argument("--colour", default="meanstd", help="colour matching: meanstd, lowfreq or none")
    p.add_argument("-o", "--out", type=Path, required=True, help="composite image")
    p.set_defaults(func=run_paste)

    p = groups["bench"].add_parser("align", help="landmark error, identity and paste-back PSNR on aligned faces (JSON)")
    p.add_argument("--data", type=Path, required=True, help="folder of aligned training faces (UTKFace)")
    p.add_argument("--n", type=int, default=200, help="held-out images to measure")
    p.add_argument("--template", default="utkface")
    p.add_argument("--size", type=int, default=64, help="output size the landmark error is measured at")
    p.add_argument("--json", action="store_true", help="one line of JSON")
    p.set_defaults(func=run_bench)


def resolve(model: str | None, template: str | None, size: int | None) -> tuple[str, int]:
    """(template, size): a registry model's (the default model when neither --model nor
    --template is given), with explicit --template/--size winning; a bare --template uses
    its own default size."""
    from ..faces.align import load_template
    from ..models.registry import get_model

    if model is not None or template is None:
        entry = get_model(model)
        return template or entry.alignment, size or entry.resolution
    return template, size or int(load_template(template).get("default_size", 256))


def run_align(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..faces.align import align_face, compact_json
    from ..faces.detection import find_faces, select_face
    from ..faces.images import load_image, save_image

    if not args.list_faces and args.out is None:
        raise UserError("give --out for the aligned face (or --list-faces)")
    template, size = resolve(args.model, args.template, args.size)  # fails before the slow detection
    image = load_image(args.image)
    faces = find_faces(image)
    if args.list_faces:
        listing = [{"index": i, **f.to_dict()} for i, f in enumerate(faces)]
        print(
            json.dumps({"image": str(args.image), "width": image.shape[1], "height": image.shape[0], "faces": listing})
        )
        return 0
    aligned = align_face(image, select_face(faces, args.face), template, size, face_index=args.face)
    save_image(aligned.image, args.out, model=args.model, generated=False)  # a crop: no visible mark
    transform = args.transform or args.out.with_suffix(".json")
    transform.write_text(compact_json({"source": str(args.image), **aligned.to_dict()}))
    print(f"face {args.face} of {len(faces)} -> {args.out} ({template}, {size} px); transform {transform}")
    return 0


def read_transform(path: Path) -> dict:
    from ..errors import UserError

    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"transform file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path.name} is not JSON; give the transform file written by align") from None


def run_paste(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..faces.align import AlignedFace, alignment_matrix
    from ..faces.detection import find_faces, select_face
    from ..faces.images import load_image, save_image
    from ..faces.paste import paste_back

    photo = load_image(args.into)
    edited = load_image(args.result)
    if args.transform:
        aligned = AlignedFace.from_dict(read_transform(args.transform))
        if args.face is not None and args.face != aligned.face_index:
            raise UserError(f"{args.transform.name} is for face {aligned.face_index}, not face {args.face}")
    else:
        # Without a transform: find the face again and rebuild the template's frame at the result's size.
        template, _ = resolve(args.model, args.template, None)
        index = args.face or 0
        face = select_face(find_faces(photo), index)
        size = edited.shape[1]
        aligned = AlignedFace(image=edited, matrix=alignment_matrix(face.landmarks, template, size), template=template,
                              size=size, face=face, source_size=(photo.shape[1], photo.shape[0]), face_index=index)  # fmt: skip
    save_image(paste_back(photo, aligned, edited, colour=args.colour), args.out, model=args.model)
    print(f"face {aligned.face_index} pasted -> {args.out}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    import sys

    from ..bench.align import evaluate, split_files, spread
    from ..errors import UserError

    if not args.data.is_dir():
        raise UserError(f"data folder not found: {args.data}")
    _, held = split_files(args.data)
    files = spread(held, args.n)
    result = evaluate(args.data, files, args.template, args.size, log=lambda m: print(m, file=sys.stderr))
    result["files"] = f"{len(files)} held-out images of {args.data.name}"
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
