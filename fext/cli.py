"""`python -m fext <command>`: the whole pipeline from a terminal, for scripts and batch work.

Every command takes --workspace (or FEXT_WORKSPACE). Errors, bad usage included, print one
clear `error:` line on stderr and exit with status 1 (--help prints the usage); --json prints
exactly one JSON object on stdout. Options come from the settings (fext.config), and every
cheap check (settings, names, folders) runs before Keras or TensorFlow is imported, so a
mistake is answered at once."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .anomaly import REFERENCE_SCORES, SCORE_HELP
from .errors import NotFoundError, UsageError

EXAMPLES = """examples:
  python -m fext train --images ~/photos --name photos --preset medium --epochs 20
  python -m fext extract --name photos
  python -m fext search --name photos query.jpg -k 5
  python -m fext anomalies --name photos --top 20
  python -m fext export --name photos --csv features.csv
  python -m fext classify --name photos --head 128 --json
  python -m fext predict --name photos image.jpg
  python -m fext experiment --images ~/photos --name exp1 --grid preset=small,medium "head=64;128,64"
"""


def add_settings(c: argparse.ArgumentParser, cls, only: tuple = (), skip: tuple = (),
                 fixed: bool = False) -> None:
    """One option per setting of config dataclass `cls`, its default, choices and help taken
    from the dataclass field (fext.config.setting). `fixed`: no default, for settings that
    override a whole experiment's."""
    from .config import describe, flag, parse_head

    for f in describe(cls):
        if (only and f.name not in only) or f.name in skip:
            continue
        kind = parse_head if isinstance(f.default, tuple) else type(f.default)
        shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        c.add_argument(flag(f.name), type=kind, choices=f.metadata["choices"],
                       default=None if fixed else f.default,
                       help=("fixed for every configuration: " if fixed else "")
                       + f"{f.metadata['help']} (default: {shown})".replace("%", "%%"))


def settings(args: argparse.Namespace, cls, **given):
    """Config `cls` from the parsed options of `add_settings` (by keyword), plus `given`."""
    from .config import describe

    return cls(**{f.name: getattr(args, f.name) for f in describe(cls)
                  if getattr(args, f.name, None) is not None}, **given)


def train_options(c: argparse.ArgumentParser) -> None:
    from .config import DataConfig, ModelConfig, TrainConfig, describe

    images = next(f for f in describe(DataConfig) if f.name == "images")
    c.add_argument("--images", required=True, help=images.metadata["help"])
    add_settings(c, DataConfig, skip=("images",))
    add_settings(c, ModelConfig)
    add_settings(c, TrainConfig)
    c.add_argument("--fresh", action="store_true", help="ignore an unfinished run and start over")
    c.add_argument("--json", action="store_true")


def store_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--store", default="faiss", choices=["faiss", "qdrant"],
                   help="where searches are served from: the in-process FAISS index, or Qdrant")
    c.add_argument("--url", default=None,
                   help="Qdrant URL (http://host:6333), or a folder for Qdrant's local mode")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a UsageError: one `error:` line naming the option and
    what it takes, status 1, like every other mistake (not the whole usage and status 2)."""

    def error(self, message: str):
        if message.endswith("required: COMMAND"):
            message = f"a command is needed: one of {', '.join(COMMANDS)}"
        raise UsageError(f"{message} (see: {self.prog} --help)")


def program() -> str:
    """The program's name as the user typed it: `fext`, or `python -m fext`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return "python -m fext" if name in ("", "__main__.py", "-c") else name


def build_parser() -> argparse.ArgumentParser:
    from .config import ClassifierConfig, DataConfig, ExtractConfig, ModelConfig, TrainConfig

    p = Parser(prog=program(), description=(
        "FEXT: train a convolutional autoencoder on a folder of images, then extract features, "
        "search by image, rank anomalies and map the collection."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name, help_, name_required=True):
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument("--workspace", default=None,
                       help="folder holding models/ and index/ (default: $FEXT_WORKSPACE or the "
                            "repository root)")
        if name_required:
            c.add_argument("--name", required=True, help="model name (letters, digits, _ - .)")
        c.add_argument("--progress-file", default=None, help=argparse.SUPPRESS)
        c.add_argument("--verbose", action="store_true",
                       help="also show TensorFlow's own log lines (or FEXT_VERBOSE=1)")
        return c

    c = cmd("train", "train an autoencoder on a folder of images (resumes an interrupted run)")
    train_options(c)

    c = cmd("build", "train, then extract and map in one go (what the app's Train page runs)")
    train_options(c)

    c = cmd("extract", "encode a folder: features, FAISS index and anomaly scores")
    c.add_argument("--images", default=None, help="image folder (default: the training folder)")
    add_settings(c, ExtractConfig)
    c.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="where the encoding runs: this process, or a Ray cluster")
    c.add_argument("--address", default=None,
                   help="Ray cluster address, e.g. ray://head:10001 (default: $RAY_ADDRESS, or "
                        "a local Ray instance started for the job)")
    store_options(c)
    c.add_argument("--json", action="store_true")

    c = cmd("search", "find the images most similar to a query image")
    c.add_argument("query", help="query image file")
    c.add_argument("-k", type=int, default=10, help="number of results")
    c.add_argument("--images", default=None,
                   help="which extraction: that of this folder (default: the most recent)")
    store_options(c)
    c.add_argument("--json", action="store_true")

    c = cmd("anomalies", "rank images by anomaly score (most unusual first)")
    c.add_argument("--top", type=int, default=20, help="how many to show (0: all)")
    c.add_argument("--all", action="store_true", help="list (and map) every image: --top 0")
    c.add_argument("--score", default=None, choices=REFERENCE_SCORES, help=SCORE_HELP)
    c.add_argument("--images", default=None,
                   help="which extraction: that of this folder (default: the most recent)")
    c.add_argument("--maps", default=None, metavar="DIR",
                   help="also write each listed image's anomaly map into DIR: the map over the "
                        "image (PNG, at the image's own aspect ratio) and its values (float32 "
                        ".npy at the model's input size, higher = more unusual; see README)")
    c.add_argument("--json", action="store_true")

    c = cmd("duplicates", "groups of exact and near-duplicate images (FEXT never deletes or moves "
                          "files: it suggests which to keep)")
    c.add_argument("--threshold", default="auto",
                   help="score (cosine similarity above the background, see README) from which "
                        "two images are copies; auto (default): the threshold calibrated on this "
                        "collection's own edited copies at extract")
    c.add_argument("--images", default=None,
                   help="which extraction: that of this folder (default: the most recent)")
    c.add_argument("--csv", default=None, help="also write the suggested removals to this CSV")
    c.add_argument("--top", type=int, default=20, help="groups to print (0: all; JSON has all)")
    c.add_argument("--json", action="store_true")

    c = cmd("export", "write the features CSV: path,label,f0,f1,...")
    c.add_argument("--csv", required=True, help="output CSV file")
    c.add_argument("--images", default=None,
                   help="which extraction: that of this folder (default: the most recent)")

    c = cmd("evaluate", "reconstruction per split; copy detection on the collection's own "
                        "images, retrieval (and anomaly detection) against raw-pixel, PCA "
                        "(and pHash) baselines")
    c.add_argument("--one-class", action="store_true",
                   help="also measure one-class anomaly detection (trains one model per label)")
    c.add_argument("--json", action="store_true")

    c = cmd("project", "compute (or reuse) the 2-D UMAP map of the collection")
    c.add_argument("--images", default=None,
                   help="which extraction: that of this folder (default: the most recent)")
    c.add_argument("--n-neighbors", type=int, default=15)
    c.add_argument("--min-dist", type=float, default=0.1)
    c.add_argument("--fresh", action="store_true",
                   help="lay out every image again, including those a re-extraction placed next "
                        "to their nearest neighbours")
    c.add_argument("--json", action="store_true")

    c = cmd("scan", "scan a folder: readable images, labels, splits and skipped files",
            name_required=False)
    c.add_argument("--images", required=True)
    add_settings(c, DataConfig, only=("image_size", "fit"))
    c.add_argument("--json", action="store_true")

    c = cmd("classify", "train a classifier on a model's encoder (labels from sub-folders): head "
                        "first, then a fine-tune of everything; report on the test split")
    c.add_argument("--images", default=None,
                   help="labelled image folder (default: the model's training folder)")
    add_settings(c, ClassifierConfig)
    c.add_argument("--no-baseline", action="store_true",
                   help="skip the PCA + logistic regression baseline")
    c.add_argument("--json", action="store_true")

    c = cmd("predict", "label an image with the model's classifier")
    c.add_argument("image", help="image file")
    c.add_argument("--json", action="store_true")

    c = cmd("experiment", "compare classifier configurations (preset x head x dropout ...) "
                          "on one folder; the best is chosen on the validation split")
    c.add_argument("--images", default=None, help="labelled image folder (or `images` in --spec)")
    c.add_argument("--grid", nargs="+", default=[], metavar="KEY=VALUES",
                   help="e.g. preset=small,medium 'head=64;128,64' dropout=0.2,0.5 (head options "
                        "separated by ';'); keys: preset, image-size, latent-dim, epochs, head, "
                        "dropout, head-epochs, finetune-epochs, batch-size, seed, ...")
    c.add_argument("--spec", default=None,
                   help="JSON or TOML file with images, base, grid and/or configs")
    add_settings(c, ModelConfig, fixed=True)
    add_settings(c, DataConfig, only=("image_size",), fixed=True)
    add_settings(c, TrainConfig, only=("epochs", "epoch_steps", "batch_size", "held_out_copies",
                                       "seed"), fixed=True)
    add_settings(c, ClassifierConfig, only=("head", "dropout", "head_epochs", "finetune_epochs"),
                 fixed=True)
    c.add_argument("--json", action="store_true")

    c = cmd("demo", "prepare the bundled demo: model, index and map (skips what is done)",
            name_required=False)
    c.add_argument("--epochs", type=int, default=None)
    c.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. A FextError (the user can fix it) prints one `error:` line and exits 1;
    anything else is a bug and keeps its traceback (the progress file still says it failed)."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from .quiet import quiet_tensorflow

    quiet_tensorflow(args.verbose)
    from .errors import FextError
    from .progress import Reporter

    progress_file = args.progress_file  # given: the caller keeps the record (the app's jobs.start)
    if progress_file is None and args.command in JOBS:
        from .jobs import register

        try:
            progress_file = register(_ws(args), args.command, getattr(args, "name", None),
                                     sys.argv[1:] if argv is None else argv).dir / "progress.json"
        except OSError as e:
            print(f"error: cannot record the job in the workspace: {e}", file=sys.stderr)
            return 1
    reporter = Reporter(progress_file)
    try:
        result = COMMANDS[args.command](args, reporter)
    except KeyboardInterrupt:
        reporter.finish("cancelled")
        print("error: interrupted", file=sys.stderr)
        return 130
    except FextError as e:
        reporter.finish("failed", error=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BaseException as e:
        reporter.finish("failed", error=f"{type(e).__name__}: {e}")
        raise
    reporter.finish("done", **(result if isinstance(result, dict) else {}))
    return 0


def _ws(args):
    from .workspace import Workspace
    return Workspace(args.workspace)


def _out(args, obj, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if args.json else text)


def run_config(args):
    """The training settings of `train` and `build`, checked with everything else that is cheap
    (the model name, the folder) before Keras is imported: a mistake is answered at once."""
    from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from .workspace import check_name

    cfg = RunConfig(data=settings(args, DataConfig), model=settings(args, ModelConfig),
                    train=settings(args, TrainConfig)).validate()
    check_name(args.name)
    if not Path(args.images).expanduser().is_dir():
        raise NotFoundError(f"image folder not found: {args.images}")
    return cfg


def train_summary(name: str, m: dict) -> str:
    found = (f", chosen on held-out copies: with the published features (read-out included) "
             f"{m['val_copies']:.1%} of edited copies of validation images found their source "
             f"first (the copy figure `evaluate` gives on the test split; the epoch's own "
             f"features {m['val_copies_training']:.1%})" if "val_copies_training" in m else
             f", chosen on held-out copies: {m['val_copies']:.1%}" if "val_copies" in m else "")
    precision = (f" in {m['train_precision']}" if m.get("train_precision", "float32") != "float32"
                 else "")
    lines = [f"trained {name!r}{precision}: best epoch {m['best_epoch']} of {m['epochs_run']}"
             f"{' (stopped early)' if m['stopped_early'] else ''}{found}; "
             f"{m['skipped']} files skipped"]
    if m.get("folders", {}).get("count", 0) >= 2:  # what training made of the sub-folders
        lines.append(f"  {m['folders']['text']}")
    for split, s in m["splits"].items():
        if s.get("images"):
            lines.append(f"  {split:5s} {s['images']:6d} images  loss {s['loss']:.5f}  "
                         f"PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.3f}")
    return "\n".join(lines)


def extract_summary(meta: dict) -> str:
    return (f"extracted {meta['count']} images ({meta['encoded']} encoded, {meta['reused']} "
            f"reused, {meta['skipped']} skipped) from {meta['images']}: {meta['dim']}-d "
            f"features, {meta['index']['kind']} index; anomaly scores: {meta['reference']['text']}")


def map_summary(coords) -> str:
    return f"UMAP map of {len(coords)} images ready"


def cmd_train(args, progress):
    cfg = run_config(args)
    from .train import train

    m = train(_ws(args), args.name, cfg, progress, fresh=args.fresh)
    _out(args, {"name": args.name, **m}, train_summary(args.name, m))
    return {"name": args.name}


def cmd_build(args, progress):
    """Train, then extract the training folder and map it: the library's three steps, each
    step's summary printed as it ends (on stderr when stdout must hold one JSON object)."""
    cfg = run_config(args)
    from .features import extract, project
    from .train import train

    ws = _ws(args)
    say = sys.stderr if args.json else sys.stdout
    print(train_summary(args.name, train(ws, args.name, cfg, progress, fresh=args.fresh)),
          file=say, flush=True)
    print(extract_summary(extract(ws, args.name, progress=progress)), file=say, flush=True)
    print(map_summary(project(ws, args.name, progress=progress)), file=say, flush=True)
    if args.json:
        print(json.dumps({"name": args.name, "built": ["model", "features", "index", "map"]}))
    return {"name": args.name}


def cmd_extract(args, progress):
    from .config import ExtractConfig

    cfg = settings(args, ExtractConfig).validate()
    if args.store == "qdrant" and not args.url:
        raise UsageError("--store qdrant needs --url (http://host:6333, or a folder)")
    if args.address and args.engine != "ray":
        raise UsageError("--address is for --engine ray")
    from .features import extract

    encoder = None
    if args.engine == "ray":
        from .scaleout import RayEncoder

        encoder = RayEncoder(args.address)
    meta = extract(_ws(args), args.name, args.images, progress, index_kind=cfg.index,
                   encoder=encoder, scores=cfg.scores, reference=cfg.reference,
                   precision=cfg.precision, store_url=args.url if args.store == "qdrant" else None)
    _out(args, meta, extract_summary(meta))
    return {"count": meta["count"]}


def existing_file(path: str, what: str) -> Path:
    """`path`, or the one-line error saying it is not there: checked before a model is loaded."""
    if not Path(path).is_file():
        raise NotFoundError(f"{what} not found: {path}")
    return Path(path)


def cmd_search(args, progress):
    existing_file(args.query, "query image")
    from .search import Searcher

    if args.store == "qdrant":
        searcher = qdrant_searcher(_ws(args), args.name, args.url)
    else:
        searcher = Searcher.open(_ws(args), args.name, args.images)
    results = searcher.search(args.query, args.k)
    for r in results:
        r.pop("id")
    text = "\n".join(f"{r['rank']:3d}  {r['score']:.4f}  "
                     f"{'same picture  ' if r['same_picture'] else ''}{r['path']}" for r in results)
    _out(args, {"query": args.query, "results": results}, text)


def qdrant_searcher(ws, name: str, url: str | None):
    """A Searcher whose index is the model's Qdrant collection (URL: --url or the extraction's)."""
    from .artifacts import Artifacts
    from .encoding import query_encoder
    from .registry import load as load_model
    from .search import Searcher
    from .stores import QdrantStore

    art = Artifacts.open(ws, name)
    url = url or art.meta.get("store", {}).get("url")
    if not url:
        raise UsageError(f"{name!r} was not published to Qdrant; give --url or run: python -m fext "
                         f"extract --name {name} --store qdrant --url URL")
    ae, _ = load_model(ws, name)
    return Searcher(art, QdrantStore.open(url, name), query_encoder(ae, art.precision))


def cmd_anomalies(args, progress):
    from .anomaly import ranking
    from .artifacts import Artifacts

    ws = _ws(args)
    art = Artifacts.open(ws, args.name, images=args.images)
    kind = args.score or art.score_kinds[0]
    scores = art.scores(kind)
    threshold = art.threshold(kind)
    df = ranking(art.items, scores, None if args.all else args.top or None)
    results = [{"rank": int(r.rank), "path": r.path, "label": r.label, "score": float(r.score),
                "flagged": bool(r.score > threshold["value"])} for r in df.itertuples()]
    reference = art.reference if kind == "reference" else {
        "kind": "folder", "text": "odd ones out of this folder"}
    flagged = int((scores > threshold["value"]).sum())
    text = [f"{kind} scores of {art.root}: {reference['text']}",
            f"threshold {threshold['value']:.5f} ({threshold['text']}): {flagged} of "
            f"{len(scores)} images flagged"]
    text += [f"{r['rank']:4d}  {r['score']:.5f}{' !' if r['flagged'] else '  '}  {r['path']}"
             for r in results]
    extra = {}
    if outdated := art.outdated_ranking(kind, args.name):
        extra["note"] = outdated
        text.append(f"note: {outdated}")
    if args.maps:  # Keras only here: a ranking alone never imports it
        from .maps import write_maps
        from .registry import open_record

        extra["maps"], files = write_maps(ws, art, open_record(ws, args.name), df,
                                          Path(args.maps).expanduser(), progress)
        for r, f in zip(results, files):
            r["map"] = f
        text += [f"anomaly maps of {len(files)} images written to {args.maps} (PNG: the map over "
                 f"the image; .npy: float32 values at {extra['maps']['size']} px): "
                 f"{extra['maps']['text']}"] + ([f"note: {extra['maps']['note']}"]
                                                 if "note" in extra["maps"] else [])
    _out(args, {"model": args.name, "images": str(art.root), "score": kind,
                "reference": reference, "threshold": threshold, "flagged": flagged,
                **extra, "results": results}, "\n".join(text))


def cmd_duplicates(args, progress):
    from .artifacts import Artifacts
    from .duplicates import find, removals
    from .workspace import atomic_path

    art = Artifacts.open(_ws(args), args.name, images=args.images)
    result = find(art, args.threshold)
    if args.csv:
        dest = Path(args.csv).expanduser()
        if not dest.parent.is_dir():
            raise NotFoundError(f"folder for the CSV not found: {dest.parent}")
        with atomic_path(dest) as tmp:
            removals(result["groups"], art.items).to_csv(tmp, index=False)
    cal, found = result["calibration"], result["groups"]
    if result["threshold"] is None:
        head = (f"identical files only; near duplicates not suggested: "
                f"{cal['text'].removeprefix('not trusted: ')} (to look "
                f"anyway, give --threshold; {cal['threshold']:.4f} would find an estimated "
                f"{cal['copies_kept']:.0%} of edited copies)")
    elif args.threshold == "auto":
        head = (f"threshold {result['threshold']:.4f} ({cal['text']}; estimated: "
                f"{cal['copies_kept']:.0%} of edited copies found, {cal['false_grouping']:.2%} of "
                "images falsely grouped)")
    else:
        head = f"threshold {result['threshold']:.4f} (given)"
    text = [f"duplicates in {result['images']} ({result['count']} images): {head}",
            f"{len(found)} groups, {result['removable']} files could be removed"
            + (f"; suggested removals written to {args.csv}" if args.csv else "")]
    for i, g in enumerate(found.dicts(art.items, args.top or None), 1):
        text.append(f"group {i}: keep {g['keeper']}")
        text += [f"    {_score(m['similarity'])}{' =' if m['exact'] else '  '}  {m['path']}"
                 + ("  (representative)" if m["path"] == g["representative"] else "")
                 for m in g["members"]]
    _out(args, {"model": args.name, **result, "groups": found.dicts(art.items)} if args.json
         else None, "\n".join(text))


def _score(similarity: float | None) -> str:
    """A member's score, or a dash for a representative that is its own group's keeper."""
    return f"{similarity:.4f}" if similarity is not None else f"{'-':>6s}"


def cmd_export(args, progress):
    from .features import export_csv

    n = export_csv(_ws(args), args.name, args.csv, args.images)
    print(f"wrote {n} rows to {args.csv}")


def cmd_evaluate(args, progress):
    from . import registry
    from .collection import Collection
    from .evaluate import pca_metrics, reconstruction_metrics
    from .quality import copy_detection, quality
    from .workspace import write_json

    ws = _ws(args)
    model, record = registry.load(ws, args.name)
    coll = Collection.for_data(ws, record.config.data, progress=progress)
    from .encoding import extraction_parts

    result = {"model": args.name, "reconstruction": reconstruction_metrics(extraction_parts(model), coll),
              "reconstruction_baseline": pca_metrics(coll, record.config.model.latent_dim),
              "copies": copy_detection(model, record, coll, progress=progress),
              **quality(model, record, coll, one_class=args.one_class, progress=progress)}
    write_json(ws.model_dir(args.name) / "evaluation.json", result)
    _out(args, result, "\n".join(evaluation_table(result)))


def evaluation_table(result: dict) -> list[str]:
    from .copies import interval

    pca = result.get("reconstruction_baseline", {"method": "", "splits": {}})
    lines = [f"{'':14s} {'':7s} {'autoencoder':^24s}"
             + (f"  {pca['method'] + ' (same images)':^24s}" if pca["splits"] else ""),
             f"{'split':14s} {'images':>7s} {'loss':>9s} {'PSNR':>7s} {'SSIM':>6s}"
             + (f"  {'loss':>9s} {'PSNR':>7s} {'SSIM':>6s}" if pca["splits"] else "")]
    for split, s in result["reconstruction"].items():
        if s.get("images"):
            b = pca["splits"].get(split, {})
            lines.append(f"{split:14s} {s['images']:7d} {s['loss']:9.5f} {s['psnr']:7.2f} "
                         f"{s['ssim']:6.3f}" + (f"  {b['loss']:9.5f} {b['psnr']:7.2f} "
                                                f"{b['ssim']:6.3f}" if b.get("images") else ""))
    if pca["splits"]:
        lines.append(f"{pca['method']}: PCA of the pixels with as many components as the model "
                     f"has features, fitted on {pca['fitted_on']} training images")
    copies = result.get("copies", {})
    if "methods" in copies:
        lines += ["", f"copy detection: {copies['queries']} edited copies of "
                      f"{copies['images copied']} images of the {copies['sources']} among "
                      f"{copies['database']} images of the collection (no labels needed)",
                  f"{'method':14s} {'recall@1':>9s} {'95 % interval':>14s} {'recall@5':>9s}"]
        lines += [f"{m:14s} {r['recall@1']:9.3f} {interval(r):>14s} {r['recall@5']:9.3f}"
                  for m, r in copies["methods"].items()]
        alone = copies["methods"].get("autoencoder", {}).get("features alone")
        if alone is not None:
            lines.append(f"autoencoder: its first result as search shows it (the first five "
                         f"checked by their pixels); by its features alone {alone:.3f}")
        if "validation" in copies:
            v = copies["validation"]
            lines.append(f"the same test on the validation split (the copies that chose the "
                         f"published epoch, searched with the published features: the figure "
                         f"training reported; {v['images copied']} images): autoencoder "
                         f"{v['recall@1']:.3f} ({interval(v)}); splits that differ within their "
                         "intervals differ by chance")
    if "note" in result:
        return lines + ["", result["note"]]
    auc = result.get("one_class_auc", {})
    lines += ["", f"{'method':14s} {'precision@10':>12s} {'mAP':>7s} {'1-class AUC':>11s}"]
    for method, r in result["retrieval"].items():
        a = f"{auc[method]['mean']:11.4f}" if method in auc else f"{'-':>11s}"
        lines.append(f"{method:14s} {r['precision@10']:12.4f} {r['map']:7.4f} {a}")
    return lines


def cmd_project(args, progress):
    from .features import project

    coords = project(_ws(args), args.name, args.n_neighbors, args.min_dist, progress=progress,
                     images=args.images, fresh=args.fresh)
    _out(args, {"model": args.name, "points": int(len(coords))}, map_summary(coords))


def cmd_scan(args, progress):
    from .collection import Collection

    coll = Collection.sync(_ws(args), args.images, args.image_size, args.fit, progress=progress)
    items, skipped = coll.items(), coll.skipped()
    summary = {"images": str(coll.root), "readable": int(len(items)), "skipped": int(len(skipped)),
               "labels": items["label"].value_counts().sort_index().to_dict(),
               "splits": items["split"].value_counts().to_dict(),
               "skipped_files": skipped.to_dict("records")}
    text = [f"{len(items)} readable images, {len(skipped)} skipped in {coll.root}"]
    text += [f"  skipped {r['path']}: {r['reason']}" for r in summary["skipped_files"]]
    _out(args, summary, "\n".join(text))


def cmd_demo(args, progress):
    from .demo import prepare

    result = prepare(_ws(args), progress, epochs=args.epochs)
    _out(args, result, f"demo ready: model {result['name']!r}, {result['count']} images")
    return result


def cmd_classify(args, progress):
    from .config import ClassifierConfig
    from .workspace import check_name

    cfg = settings(args, ClassifierConfig).validate()
    check_name(args.name)
    if args.images and not Path(args.images).expanduser().is_dir():
        raise NotFoundError(f"image folder not found: {args.images}")
    from .classifier import train_classifier

    result = train_classifier(_ws(args), args.name, args.images, cfg, progress,
                              with_baseline=not args.no_baseline)
    _out(args, result, "\n".join(classify_summary(result)))
    return {"name": args.name}


def classify_summary(result: dict) -> list[str]:
    m, test = result["metrics"], result["metrics"]["test"]
    sel = m["selected"]
    lines = [f"classifier of {result['model']!r}: {len(result['labels'])} labels, "
             f"{m['images']['train']}/{m['images']['val']}/{m['images']['test']} train/val/test "
             f"images; chosen: {sel['phase']} epoch {sel['epoch']} (by {sel['monitor']})"]
    lines += [f"  note: {n}" for n in result["notes"]]
    if "val_accuracy" in m["val"]:
        lines.append(f"  validation accuracy {m['val']['val_accuracy']:.4f}")
    if not test.get("images"):
        return lines + ["  no test images: nothing to report"]
    lines.append(f"  test accuracy {test['accuracy']:.4f}  ({test['images']} images)")
    if "baseline" in m and "test_accuracy" in m["baseline"]:
        lines.append(f"  baseline {m['baseline']['method']}: test accuracy "
                     f"{m['baseline']['test_accuracy']:.4f}")
    lines += ["", f"  {'label':12s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'support':>7s}"]
    for r in test["report"]["per_class"]:
        lines.append(f"  {r['label'][:12]:12s} {r['precision']:9.3f} {r['recall']:7.3f} "
                     f"{r['f1']:6.3f} {r['support']:7d}")
    labels = result["labels"]
    width = max(5, *(len(x) for x in labels)) + 1
    lines += ["", "  confusion matrix (rows: true, columns: predicted)",
              "  " + " " * width + "".join(f"{x[:width - 1]:>{width}s}" for x in labels)]
    for lab, row in zip(labels, test["confusion_matrix"]):
        lines.append(f"  {lab[:width - 1]:{width}s}" + "".join(f"{v:{width}d}" for v in row))
    return lines


def cmd_predict(args, progress):
    existing_file(args.image, "image")
    from .classifier import Classifier

    result = Classifier.open(_ws(args), args.name).predict(args.image)
    text = [f"{result['label']}  ({result['confidence']:.3f})"]
    text += [f"  {lab:16s} {p:.4f}" for lab, p in result["probabilities"].items()]
    _out(args, {"image": args.image, **result}, "\n".join(text))


def cmd_experiment(args, progress):
    from .experiment import SETTINGS, configurations, load_spec, parse_grid, run_experiment

    spec = load_spec(args.spec) if args.spec else {}
    images = args.images or spec.get("images")
    if not images:
        raise UsageError("give the image folder with --images (or `images` in the spec file)")
    flags = {k: v for k, v in vars(args).items() if k in SETTINGS and v is not None}
    grid = {**spec.get("grid", {}), **parse_grid(args.grid)}
    configs = configurations({**spec.get("base", {}), **flags}, grid, spec.get("configs"))
    summary = run_experiment(_ws(args), args.name, images, configs, progress)
    _out(args, summary, "\n".join(experiment_table(summary)))
    return {"name": args.name, "best": summary["best"]}


def experiment_table(summary: dict) -> list[str]:
    width = max(6, *(len(r["id"]) for r in summary["configs"]))
    lines = [f"experiment {summary['name']!r}: {len(summary['configs'])} configurations "
             f"(* best by validation)",
             f"  {'config':{width}s} {'val acc':>8s} {'val loss':>9s} {'test acc':>9s} "
             f"{'chosen':>12s}  autoencoder"]
    for r in summary["configs"]:
        fmt = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else f"{'-':>{w}s}"  # noqa: E731
        sel = f"{r['selected']['phase']} {r['selected']['epoch']}"
        lines.append(f"{'*' if r['best'] else ' '} {r['id']:{width}s} {fmt(r['val_accuracy'], 8, 4)} "
                     f"{fmt(r['val_loss'], 9, 4)} {fmt(r['test_accuracy'], 9, 4)} {sel:>12s}  "
                     f"{r['autoencoder']}{' (reused)' if r['reused_autoencoder'] else ''}")
    return lines


COMMANDS = {"train": cmd_train, "build": cmd_build, "extract": cmd_extract, "search": cmd_search,
            "anomalies": cmd_anomalies, "duplicates": cmd_duplicates, "export": cmd_export,
            "evaluate": cmd_evaluate,
            "project": cmd_project, "scan": cmd_scan, "demo": cmd_demo,
            "classify": cmd_classify, "predict": cmd_predict, "experiment": cmd_experiment}

# the long commands: typed in a terminal, each records itself as a job of the workspace
# (fext.jobs.register), so the app lists it with its live progress as it lists its own
JOBS = ("train", "build", "extract", "evaluate", "project", "classify", "experiment", "demo")
