"""Browser decoder latency: time from a click on the canvas to the mask drawn, in headless Chromium.

Builds the fixtures (the single- and multimask decoder ONNX exported with
``workers.sam.onnx.export_onnx_decoder`` from the trained default model if ``models/default/model.pt``
exists, else the ``lite`` architecture with random weights, and an embedding of a synthetic 1024×768
image in the wire format), serves ``frontend/dist/bench.html`` with cross-origin isolation, clicks
≥100 times at random points and prints p50/p95 per mode and WASM thread count, with where the time
went (decoder ``run()``, post-processing in the worker, drawing, the rest = messages and waiting),
plus the embedding size on the wire for float16 and int8. Modes (see ``frontend/src/bench/bench.ts``):
``cold`` first click without a hover before it, ``hover`` first click after the pointer rested on the
point for a random dwell (the annotator's hover preview decodes it meanwhile), ``refine`` follow-up
clicks with the previous low-res mask fed back, ``ahead`` ``refine``'s clicks each after a random
dwell, follow-ups decoded ahead while the pointer rests as the annotator does; their labels
(``--ahead-labels``): ``buttons`` half right clicks (negative) drawn at random, ``mask`` negative
inside the current mask and positive outside (the evaluation's robot clicker).
Run: ``.venv/bin/python benchmarks/bench_browser_decoder.py [--clicks 120] [--threads 1 2]
[--modes cold hover refine ahead] [--ahead-labels buttons mask] [--dwell-ms 100 500]``
(``npm run build`` in ``frontend/`` first, or pass ``--build``).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser.serve import serve  # noqa: E402

from backend.services.mask_refine import RefineParams  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def make_fixtures(out: Path, max_few_points: int | None = None, decoder_dir: Path | None = None,
                  quantize: bool = False, size: tuple[int, int] = (1024, 768)) -> str:
    """Write decoder.onnx, decoder_multimask.onnx, emb_float16.bin and emb_int8.bin into ``out``; returns
    the model's description.

    The decoders are exported with ``max_few_points`` (None: the export's default), or copied from
    ``decoder_dir`` when given (to time an older export beside the current one); ``quantize`` exports
    the int8 dynamically quantised decoders.
    """
    import shutil

    import torch

    from backend.services.embedding_format import encode_embedding
    from workers.sam.build import DEFAULT_MODEL_PATH, build_sam
    from workers.sam.onnx import export_onnx_decoder
    from workers.sam.predictor import SamPredictor

    torch.manual_seed(0)
    if DEFAULT_MODEL_PATH.is_file():
        model, what = build_sam("default", device="cpu"), f"trained default model ({DEFAULT_MODEL_PATH})"
    else:
        model, what = build_sam("lite", device="cpu"), "lite architecture, RANDOM weights (no models/default/model.pt)"
    if decoder_dir is not None:
        for name in ("decoder.onnx", "decoder_multimask.onnx"):
            shutil.copyfile(decoder_dir / name, out / name)
        what += f"; decoders copied from {decoder_dir}"
    else:
        opts = {"quantize": quantize} if max_few_points is None else {"max_few_points": max_few_points,
                                                                      "quantize": quantize}
        export_onnx_decoder(model, out / "decoder.onnx", **opts)
        export_onnx_decoder(model, out / "decoder_multimask.onnx", return_single_mask=False, **opts)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = (xx * 255 // w).astype(np.uint8)
    image[..., 1] = (yy * 255 // h).astype(np.uint8)
    # a disc and a rectangle, placed as on the 1024×768 image whatever the size
    s = w / 1024
    image[((xx - 400 * s) ** 2 + (yy - 300 * s) ** 2) < (120 * s) ** 2] = (240, 200, 40)
    image[round(500 * s):round(700 * s), round(600 * s):round(900 * s)] = (30, 60, 220)
    from PIL import Image

    Image.fromarray(image).save(out / "image.png")  # the page's guide when masks are refined
    predictor = SamPredictor(model)
    predictor.set_image(image)
    feats = predictor.features.cpu().numpy()
    for dtype in ("float16", "int8"):
        blob = encode_embedding(feats, model_version="bench", orig_size=predictor.original_size,
                                input_size=predictor.input_size, dtype=dtype)
        (out / f"emb_{dtype}.bin").write_bytes(blob)
    return what


def run_clicks(page, url: str, clicks: int, seed: int, dwell_ms: tuple[float, float] | None = None,
               right_share: float = 0.0) -> dict:
    """Click ``clicks`` times at random points; with ``dwell_ms`` the pointer first moves there (in 5
    steps, like a hand) and rests a uniformly random time in that range before pressing. A share
    ``right_share`` of the clicks, drawn at random, are right clicks (negative points in ``ahead``)."""
    page.goto(url)
    page.wait_for_function("window.bench && (window.bench.ready || window.bench.error)", timeout=120_000)
    state = page.evaluate("window.bench")
    if state["error"]:
        raise RuntimeError(f"bench page failed: {state['error']}")
    box = page.locator("#stage").bounding_box()
    rng = np.random.default_rng(seed)
    for i in range(clicks):
        x = box["x"] + 20 + rng.random() * (box["width"] - 40)
        y = box["y"] + 20 + rng.random() * (box["height"] - 40)
        if dwell_ms:
            page.mouse.move(x, y, steps=5)
            page.wait_for_timeout(dwell_ms[0] + rng.random() * (dwell_ms[1] - dwell_ms[0]))
            button = "right" if rng.random() < right_share else "left"
            page.mouse.down(button=button)
            page.mouse.up(button=button)
        else:
            page.mouse.click(x, y)
        page.wait_for_function(f"window.bench.latencies.length >= {i + 1} || window.bench.error", timeout=30_000)
    return page.evaluate("window.bench")


def summarize(st: dict) -> str:
    lat, run, post, draw = (np.asarray(st[k]) for k in ("latencies", "decodeMs", "postMs", "drawMs"))
    reused = np.asarray(st["reused"], bool)
    fresh = ~reused
    rest = lat[fresh] - run[fresh] - post[fresh] - draw[fresh]
    parts = (f"click→mask drawn p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms over {len(lat)} clicks; "
             f"decoder run() p50 {pct(run, 50):.1f} ms, worker post {pct(post, 50):.1f} ms "
             f"(of it refinement {pct(st['refineMs'], 50):.1f}), draw {pct(draw, 50):.1f} ms")
    if fresh.any():
        parts += f", messages+waiting {pct(rest, 50):.1f} ms (p50 of fresh decodes)"
    if reused.any():
        parts += (f"; {reused.mean() * 100:.0f}% of clicks answered by the hover decode "
                  f"(their p50 {pct(lat[reused], 50):.1f} ms, the others' {pct(lat[fresh], 50) if fresh.any() else float('nan'):.1f} ms)")
    if st.get("progressive"):
        parts += (f"; drawn first unrefined, then refined: click→refined mask drawn p50 "
                  f"{pct(st['refinedLatencies'], 50):.1f} ms, p95 {pct(st['refinedLatencies'], 95):.1f} ms")
    return parts + f"; mask pixels median {statistics.median(st['maskPixels']):.0f}"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clicks", type=int, default=120)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--modes", nargs="+", default=["cold", "hover", "refine"],
                    choices=["cold", "hover", "refine", "ahead"])
    ap.add_argument("--ahead-labels", nargs="+", default=["buttons"], choices=["buttons", "mask"],
                    help="ahead mode: how follow-up clicks get their label (one run per value)")
    ap.add_argument("--dwell-ms", type=float, nargs=2, default=[100.0, 500.0],
                    help="hover mode: the pointer rests this long (uniform range) before the click")
    ap.add_argument("--build", action="store_true", help="run `npm run build` in frontend/ first")
    ap.add_argument("--refine", nargs="+", default=["guided"],
                    choices=["guided", "progressive", "ranked", "wholegc", "nogc", "edges", "none"],
                    help="refine masks with the image (guided: the server's default settings, each mask refined "
                         "before it is drawn, as hover and decode-ahead decodes are; progressive: the same settings, "
                         "a fresh click's mask drawn before it is refined and again after, as the annotator does; "
                         "ranked: the default settings, but a first click's three candidates all refined and ranked "
                         "by their predicted IoU after refinement (MASKLOOP_MASK_REFINE_SELECT=refined); wholegc: the "
                         "GrabCut pass on the whole image instead of a window around the mask; nogc: without the "
                         "GrabCut pass; edges: without the colour term and the GrabCut pass), or not; several "
                         "values run each")
    ap.add_argument("--max-few-points", type=int, default=None,
                    help="export the decoders with this switch point (0: the usual order only; default: the export's)")
    ap.add_argument("--quantize", action="store_true", help="time the int8 dynamically quantised decoders")
    ap.add_argument("--image-size", type=int, nargs=2, default=[1024, 768], metavar=("W", "H"),
                    help="the synthetic image's size in pixels (a camera photo: 4000 3000)")
    ap.add_argument("--decoder-dir", type=Path, default=None,
                    help="time decoder.onnx and decoder_multimask.onnx from this folder instead of exporting them")
    ap.add_argument("--dist", type=Path, default=None,
                    help="serve this build of the page instead of frontend/dist (an older build, to compare the two "
                         "back to back)")
    args = ap.parse_args()
    if args.clicks < 1:
        sys.exit("--clicks must be at least 1")
    if min(args.image_size) < 16 or max(args.image_size) > 10_000:
        sys.exit("--image-size: each side must be 16 to 10000 pixels")
    dist = ROOT / "frontend" / "dist"
    if args.dist is not None:
        if args.build or not (args.dist / "bench.html").is_file():
            sys.exit(f"--dist {args.dist}: no bench.html there (and --build builds frontend/dist only)")
        dist = args.dist
    elif args.build or not (dist / "bench.html").is_file():
        subprocess.run(["npm", "run", "build"], cwd=ROOT / "frontend", check=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = Path(tmp)
        t0 = time.perf_counter()
        what = make_fixtures(fixtures, args.max_few_points, args.decoder_dir, args.quantize, tuple(args.image_size))
        print(f"fixtures: {what}; built in {time.perf_counter() - t0:.1f} s")
        sizes = {d: (fixtures / f"emb_{d}.bin").stat().st_size for d in ("float16", "int8")}
        server, base = serve(dist, fixtures)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
                      f"{os.cpu_count()} CPUs (shared), Chromium {browser.version}")
                print(f"embedding on the wire: float16 {sizes['float16']:,} B, int8 {sizes['int8']:,} B")
                for threads in args.threads:
                    runs = [(m, lab, ref) for m in args.modes
                            for lab in (args.ahead_labels if m == "ahead" else ["buttons"]) for ref in args.refine]
                    for mode, labels, refine in runs:
                        page = browser.new_page(viewport={"width": 900, "height": 700})
                        url = (f"{base}/bench.html?model=/fixtures/decoder.onnx&multimask=/fixtures/decoder_multimask.onnx"
                               f"&embedding=/fixtures/emb_float16.bin&threads={threads}&mode={mode}&labels={labels}"
                               f"&image=/fixtures/image.png")
                        if refine != "none":
                            p = {"guided": RefineParams(), "progressive": RefineParams(),
                                 "ranked": RefineParams(select="refined"),
                                 "wholegc": RefineParams(grabcut_crop=0.0),
                                 "nogc": RefineParams(grabcut=0), "edges": RefineParams(colour=0.0, grabcut=0)}[refine]
                            spec = (p.work_size, p.radius, p.eps, p.colour, p.colour_bins, p.colour_clip,
                                    p.grabcut, p.grabcut_iters, p.grabcut_disc, p.grabcut_crop)
                            url += "&refine=" + ",".join(map(str, spec)) + f"&select={p.select}"
                            url += "&select_weights=" + ",".join(map(str, p.select_weights))
                            url += "&progressive=1" if refine == "progressive" else ""
                        dwell = tuple(args.dwell_ms) if mode in ("hover", "ahead") else None
                        st = run_clicks(page, url, args.clicks, seed=threads, dwell_ms=dwell,
                                        right_share=0.5 if mode == "ahead" and labels == "buttons" else 0.0)
                        what = (f"{mode}" + (f", labels {labels}" if mode == "ahead" else "") + f", refine {refine}"
                                + (f" (dwell {dwell[0]:.0f}–{dwell[1]:.0f} ms)" if dwell else ""))
                        print(f"[{what}] threads requested {threads}, used {st['threads']} "
                              f"(crossOriginIsolated={st['isolated']}, multimask={st['multimask']}): {summarize(st)}")
                        page.close()
                browser.close()
        finally:
            server.shutdown()


if __name__ == "__main__":
    main()
