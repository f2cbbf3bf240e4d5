"""Image ingestion: validate, decode safely, store content-addressed, thumbnail, dedupe per project.

Used by the upload route, the folder import (API and CLI) and the COCO import. The stored file is
what the workers decode: the original bytes, unless the EXIF orientation rotates the picture (or the
pixel mode is unusual), in which case the upright image is stored re-encoded as PNG so that the
decoded array always has exactly ``height x width`` pixels as recorded on the row.
"""
from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.errors import BadRequest, Conflict, DomainError, Forbidden, PayloadTooLarge
from backend.db.models import Image, Project
from backend.storage import BlobStorage, keys

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256
# Pillow format name -> file extension of the stored original.
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff", "GIF": "gif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# Modes every decoder (Pillow, OpenCV, the browser) reads as 8-bit gray/colour.
PLAIN_MODES = {"RGB", "RGBA", "L", "LA", "P"}


@dataclass
class IngestResult:
    image: Image
    duplicate: bool


@dataclass
class ImportSummary:
    created: list[Image] = field(default_factory=list)
    duplicates: list[Image] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    error_codes: list[int] = field(default_factory=list)  # HTTP status of each error


def safe_file_name(name: str | None) -> str:
    """The base name of an uploaded file, without any directory part.

    Raises BadRequest for empty names, ``.``/``..``, control characters or over-long names.
    """
    raw = (name or "").strip()
    if not raw:
        raise BadRequest("file name is empty")
    if any(ord(c) < 32 for c in raw):
        raise BadRequest(f"file name {raw!r} contains control characters")
    parts = [p for p in PureWindowsPath(raw).parts if p not in ("/", "\\")]
    parts = [q for p in parts for q in PurePosixPath(p).parts]
    if any(p == ".." for p in parts):
        raise BadRequest(f"file name {raw!r} tries to leave its directory ('..')")
    base = parts[-1] if parts else ""
    if base in ("", ".", "/") or base.endswith(":"):
        raise BadRequest(f"file name {raw!r} has no base name")
    if len(base) > 255:
        raise BadRequest(f"file name {base[:40]!r}... is longer than 255 characters")
    return base


@dataclass
class DecodedImage:
    """A fully decoded upload: ``image`` is upright (EXIF applied), ``stored`` the bytes to keep."""

    image: PILImage.Image
    stored: bytes
    ext: str
    width: int
    height: int


def decode_image(data: bytes, file_name: str, settings: Settings) -> DecodedImage:
    """Check size and pixel count before decoding, then decode fully and apply EXIF orientation.

    Raises PayloadTooLarge (bytes or pixels over the limits) or BadRequest (not an image, truncated).
    """
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"{file_name}: {len(data)} bytes is over the upload limit of "
                              f"{settings.max_upload_bytes} bytes")
    if not data:
        raise BadRequest(f"{file_name}: the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            img = PILImage.open(io.BytesIO(data))
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"{file_name}: image has too many pixels ({exc})") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise BadRequest(f"{file_name}: not a readable image") from exc
        fmt = img.format or ""
        if fmt not in FORMATS:
            raise BadRequest(f"{file_name}: unsupported image format {fmt or 'unknown'!r}; "
                             f"use one of {', '.join(sorted(FORMATS))}")
        width, height = img.size
        # The header's size is checked before any pixel is decoded (decompression bombs).
        if width <= 0 or height <= 0:
            raise BadRequest(f"{file_name}: image has an empty size {width}x{height}")
        if width * height > settings.max_image_pixels:
            raise PayloadTooLarge(f"{file_name}: {width}x{height} = {width * height} pixels is over the limit "
                                  f"of {settings.max_image_pixels} pixels")
        try:
            img.load()
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise PayloadTooLarge(f"{file_name}: image has too many pixels ({exc})") from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise BadRequest(f"{file_name}: the image is truncated or corrupt ({exc})") from exc
    rotated = _orientation(img) not in (None, 1)
    upright = ImageOps.exif_transpose(img) if rotated else img
    if rotated or img.mode not in PLAIN_MODES:
        out = upright if upright.mode in PLAIN_MODES else upright.convert("RGB")
        buf = io.BytesIO()
        out.save(buf, format="PNG")
        stored, ext = buf.getvalue(), "png"
    else:
        stored, ext = data, FORMATS[fmt]
    return DecodedImage(image=upright, stored=stored, ext=ext, width=upright.size[0], height=upright.size[1])


def _orientation(img: PILImage.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - unreadable EXIF counts as "no orientation"
        return None


def make_thumbnail(img: PILImage.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG whose longer side is at most ``size`` pixels."""
    thumb = img.copy()
    thumb.thumbnail((size, size))
    if thumb.mode != "RGB":
        if thumb.mode in ("RGBA", "LA") or (thumb.mode == "P" and "transparency" in thumb.info):
            rgba = thumb.convert("RGBA")
            background = PILImage.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            thumb = background
        else:
            thumb = thumb.convert("RGB")
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def find_duplicate(session: Session, project_id: int, sha256: str) -> Image | None:
    return session.scalar(select(Image).where(Image.project_id == project_id, Image.sha256 == sha256))


def ingest_bytes(session: Session, storage: BlobStorage, settings: Settings, project: Project,
                 file_name: str | None, data: bytes) -> IngestResult:
    """Validate and store one image for ``project``; the caller commits the session.

    A file whose bytes are already in the project returns the existing row with ``duplicate=True``.
    Blobs are written before the row (content-addressed, so a failed row leaves no wrong data).
    """
    name = safe_file_name(file_name)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"{name}: {len(data)} bytes is over the upload limit of "
                              f"{settings.max_upload_bytes} bytes")
    sha = hashlib.sha256(data).hexdigest()
    existing = find_duplicate(session, project.id, sha)
    if existing is not None:
        return IngestResult(existing, True)
    decoded = decode_image(data, name, settings)
    key = keys.image_key(sha, decoded.ext)
    thumb_key = keys.thumbnail_key(sha)
    if not storage.exists(key):
        storage.put_bytes(key, decoded.stored)
    if not storage.exists(thumb_key):
        storage.put_bytes(thumb_key, make_thumbnail(decoded.image))
    image = Image(project_id=project.id, file_name=name, storage_key=key, thumbnail_key=thumb_key, sha256=sha,
                  width=decoded.width, height=decoded.height, status="new")
    if session.get_bind().dialect.name == "sqlite":
        # pysqlite commits on RELEASE SAVEPOINT outside an explicit BEGIN, which would break the
        # caller's all-or-nothing transaction; SQLite serialises writers, so a plain flush it is.
        session.add(image)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"{name}: the same image was stored concurrently; retry the upload") from None
        return IngestResult(image, False)
    try:
        with session.begin_nested():
            session.add(image)
    except IntegrityError:
        # Another request stored the same bytes meanwhile: report it as a duplicate.
        existing = find_duplicate(session, project.id, sha)
        if existing is None:
            raise
        return IngestResult(existing, True)
    return IngestResult(image, False)


def ingest_many(session: Session, storage: BlobStorage, settings: Settings, project: Project,
                files: Iterable[tuple[str | None, Callable[[], bytes]]],
                on_progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Ingest several files, collecting per-file errors instead of stopping; the caller commits."""
    summary = ImportSummary()
    for i, (name, read) in enumerate(files, start=1):
        try:
            result = ingest_bytes(session, storage, settings, project, name, read())
        except Conflict:
            raise  # the session's transaction is unusable: the whole request fails
        except DomainError as exc:
            summary.errors.append({"filename": str(name), "detail": exc.detail})
            summary.error_codes.append(exc.status_code)
        except OSError as exc:
            summary.errors.append({"filename": str(name), "detail": f"could not read the file: {exc.strerror}"})
            summary.error_codes.append(400)
        else:
            (summary.duplicates if result.duplicate else summary.created).append(result.image)
        if on_progress is not None:
            on_progress(i)
    return summary


def resolve_import_path(settings: Settings, path: str | Path, *, want_dir: bool = True) -> Path:
    """Resolve ``path`` (symlinks included) and check that it lies below an allowed import root."""
    if not str(path).strip():
        raise BadRequest("import path is empty")
    if "\x00" in str(path):
        raise BadRequest("import path contains a NUL character")
    raw = Path(path).expanduser()
    try:
        resolved = raw.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        raise BadRequest(f"import path {str(path)!r} does not exist") from None
    roots = settings.import_root_paths
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise Forbidden(f"import path {str(path)!r} is outside the allowed import roots "
                        f"({', '.join(str(r) for r in roots)}); set MASKLOOP_IMPORT_ROOTS")
    if want_dir and not resolved.is_dir():
        raise BadRequest(f"import path {str(path)!r} is not a directory")
    return resolved


def list_image_files(folder: Path, roots: list[Path]) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted), skipping links that lead outside ``roots``."""
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        real = p.resolve()
        if not any(root in real.parents for root in roots):
            log.warning("skipping %s: it links outside the import roots", p)
            continue
        out.append(p)
    return out


def import_folder(session: Session, storage: BlobStorage, settings: Settings, project: Project,
                  path: str | Path, on_progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Import every image file below ``path`` (which must lie below an import root); caller commits."""
    folder = resolve_import_path(settings, path)
    files = list_image_files(folder, settings.import_root_paths)
    total = len(files)
    if on_progress is not None:
        on_progress(0, total)
    return ingest_many(session, storage, settings, project,
                       ((p.name, lambda p=p: _read_at_most(p, settings.max_upload_bytes)) for p in files),
                       on_progress=(lambda done: on_progress(done, total)) if on_progress else None)


def _read_at_most(path: Path, limit: int) -> bytes:
    """The file's bytes; a file over ``limit`` is refused by its size, before anything is read into memory
    (and a file that grew meanwhile gives ``limit + 1`` bytes, which ingest refuses)."""
    size = path.stat().st_size
    if size > limit:
        raise PayloadTooLarge(f"{path.name}: {size} bytes is over the upload limit of {limit} bytes")
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


# ids or hashes per IN (...) list: well under SQLite's limit on bound parameters
IN_CHUNK = 500


def stored_files(session: Session, images: Iterable[Image]) -> dict[str, set[str]]:
    """The storage keys of ``images`` (file, thumbnail, embeddings), by content hash: what deleting
    them may free (``remove_unshared_files``). The embeddings are read a few hundred images a query."""
    from backend.db.models import Embedding

    images = list(images)
    sha_of = {image.id: image.sha256 for image in images}
    files: dict[str, set[str]] = {}
    for image in images:
        files.setdefault(image.sha256, set()).update(
            {image.storage_key, image.thumbnail_key or keys.thumbnail_key(image.sha256)})
    ids = list(sha_of)
    for chunk in range(0, len(ids), IN_CHUNK):
        rows = session.execute(select(Embedding.image_id, Embedding.storage_key)
                               .where(Embedding.image_id.in_(ids[chunk:chunk + IN_CHUNK])))
        for image_id, key in rows:
            files[sha_of[image_id]].add(key)
    return files


def remove_unshared_files(session: Session, storage: BlobStorage, files: dict[str, set[str]]) -> None:
    """After image rows were deleted (and committed): remove the stored files of every content hash
    that no image row, of any project, still has (asked a few hundred hashes a query). A file that cannot be
    removed is logged and left (the rows are gone; it only takes disk space)."""
    shas = list(files)
    still_used: set[str] = set()
    for chunk in range(0, len(shas), IN_CHUNK):
        still_used.update(session.scalars(select(Image.sha256).where(Image.sha256.in_(shas[chunk:chunk + IN_CHUNK]))))
    for sha, keys_of in files.items():
        if sha in still_used:
            continue
        for key in sorted(keys_of):
            try:
                storage.delete(key)
            except OSError as exc:
                log.warning("the stored file %s of a deleted image was not removed: %s", key, exc)


def refuse_while_model_work_runs(session: Session, project_id: int, what: str) -> None:
    """409 when a job or training round of the project is queued or running (they read its images)."""
    from backend.db.models import Job, Round

    for model, name in ((Job, "job"), (Round, "training round")):
        busy = session.scalar(select(model.id).where(model.project_id == project_id,
                                                     model.status.in_(("queued", "running"))).limit(1))
        if busy is not None:
            raise Conflict(f"{name} {busy} of this project is running; {what} after it finishes")
