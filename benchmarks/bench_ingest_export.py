"""Benchmark image ingestion and dataset export on a temporary SQLite database.

Measures ``ingest_bytes`` (hash, full decode, thumbnail, store, row) per image and
``build_export`` (COCO JSON and SA-1B zip) for a project with many RLE masks. Prints measured
numbers and the machine; asserts nothing about time.

    .venv/bin/python benchmarks/bench_ingest_export.py --images 40 --size 1024 --masks-per-image 50
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as mask_utils


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024, help="longer image side in pixels")
    parser.add_argument("--masks-per-image", type=int, default=50)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="maskloop-bench-"))
    os.environ["MASKLOOP_DATA_DIR"] = str(tmp)
    os.environ.pop("DATABASE_URL", None)
    from backend.cli.server import run_migrations
    from backend.core.config import get_settings
    from backend.db.models import Annotation, Label, Project
    from backend.db.session import get_engine, session_scope
    from backend.services.export import build_export
    from backend.services.images import ingest_bytes
    from backend.storage import get_storage

    settings = get_settings()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(settings.resolved_database_url)
    storage = get_storage(settings)
    rng = np.random.default_rng(0)
    h, w = args.size * 3 // 4, args.size
    blobs = []
    for _ in range(args.images):
        arr = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        PILImage.fromarray(arr).resize((w, h), PILImage.BILINEAR).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())

    with session_scope(settings.resolved_database_url) as session:
        project = Project(name="bench")
        session.add(project)
        session.flush()
        label = Label(project_id=project.id, name="thing")
        session.add(label)
        session.flush()
        t0 = time.perf_counter()
        images = [ingest_bytes(session, storage, settings, project, f"im{i}.jpg", data).image
                  for i, data in enumerate(blobs)]
        ingest_s = time.perf_counter() - t0
        yy, xx = np.mgrid[:h, :w]
        for image in images:
            for _ in range(args.masks_per_image):
                cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(5, h // 6)
                m = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
                rle = mask_utils.encode(np.asfortranarray(m))
                session.add(Annotation(image_id=image.id, label_id=label.id, stage="assisted_manual", source="manual",
                                       segmentation={"size": [h, w], "counts": rle["counts"].decode()},
                                       bbox=[float(v) for v in mask_utils.toBbox(rle)],
                                       area=float(mask_utils.area(rle))))
        project_id = project.id
    n_masks = args.images * args.masks_per_image
    with get_engine(settings.resolved_database_url).connect() as conn:
        t0 = time.perf_counter()
        coco = build_export(conn, project_id, "coco")
        coco_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sa1b = build_export(conn, project_id, "sa1b")
        sa1b_s = time.perf_counter() - t0

    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python={platform.python_version()} (load avg {os.getloadavg()[0]:.1f})")
    print(f"ingest: {args.images} JPEG {w}x{h}: {ingest_s:.2f} s total, "
          f"{1000 * ingest_s / args.images:.1f} ms/image")
    print(f"export coco: {n_masks} masks on {args.images} images: {coco_s:.2f} s, {len(coco) / 1e6:.1f} MB")
    print(f"export sa1b: {n_masks} masks on {args.images} images: {sa1b_s:.2f} s, {len(sa1b) / 1e6:.1f} MB")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
