"""The dataset catalogue (formerly ``data/registry.py``): each dataset's layout, classes, source
and search paths, as registered :class:`DatasetSpec` entries and :class:`Layout` classes."""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

from ..registry import Arg, Registry
from .images import is_image_file

#: every dataset the kit knows (``--dataset``); a new one is ``DATASETS.register(DatasetSpec(...))``
DATASETS: Registry["DatasetSpec"] = Registry("dataset", "datasets of the catalogue (--dataset)",
                                                lazy=(__package__, "dataset_"))
#: how a dataset's files are laid out (``DatasetSpec.layout``); a new layout is one Layout class
LAYOUTS: Registry["Layout"] = Registry("layout", "dataset folder layouts (DatasetSpec.layout)",
                                            lazy=(__package__, "layout_"))

SKIP_DIRS = {"__macosx", ".ds_store", ".git", ".ipynb_checkpoints", "@eadir"}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not where we looked; the message says where we looked and how to get it."""


class DatasetLayoutError(ValueError):
    """A folder exists but is not laid out as the dataset expects."""


class Record(NamedTuple):
    path: Path  # absolute
    class_name: str  # canonical class name from the spec
    source_split: str  # the dataset's own split folder ('Training', 'Testing') or ''
    group: str  # what must stay together in one split (patient id where known)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    layout: str  # a registered Layout: class_folders | split_class_folders | breakhis | ham10000
    classes: tuple[str, ...] = ()  # canonical names, in label order; () = discovered
    aliases: dict[str, str] = field(default_factory=dict)  # other folder names -> canonical
    split_folders: tuple[str, ...] = ()  # for split_class_folders, e.g. Training, Testing
    test_folder: str = ""  # the predefined test split, when the dataset has one
    paper_count: int | None = None  # images the paper reports
    default_epochs: int = 20
    modality: str = ""
    kaggle_slug: str = ""
    source_url: str = ""
    license: str = ""
    citation: str = ""
    #: Record.group must stay in one split whatever ``group_by`` says (except 'none'): several
    #: images of one lesion (HAM10000) are one sample, not several
    group_required: bool = False
    magnification: str = "400"  # BreaKHis layout: which magnification folder is kept
    #: BreaKHis layout: "binary" (benign / malignant) or "malignant_subtype" (the four malignant
    #: tumour types from their folder names; benign images are left out)
    label_from: str = "binary"
    #: the paper's own folds: (n_splits, random_state, val_fold, test_folds) of a StratifiedKFold
    #: (split='folds'), e.g. seed 002's 5-fold BreaKHis split with val fold 0 and test fold 1
    folds: tuple | None = None
    #: a regex with a named group ``patient`` matched against each file name; a match puts the
    #: patient id in Record.group, so ``group_by='patient'`` keeps a patient's images together
    patient_pattern: str = ""
    #: folders below a download where the class folders sit when they are nested deeper than one
    #: level (LC25000: lung_colon_image_set/lung_image_sets)
    inner_paths: tuple[str, ...] = ()
    #: at most this many images per (source folder, class), a fixed subset chosen by a hash of the
    #: file's relative path (not by the run's seed: the same images for every run); 0 = all
    subsample_per_class: int = 0
    #: the folder name the download is looked for under ($MEDTL_DATA_DIR/<folder>, data/<folder>)
    #: when a spec is a view of another's data (oct2017_2k reads oct2017's); "" = ``name``
    folder: str = ""
    #: labels that pool several source classes, in label order: ((label, (class, ...)), ...).
    #: A view such as tumour vs no tumour over the four brain MRI folders; () = one label per class
    merge: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: folders inside a class folder that hold no training images (COVID-19 Radiography's masks/)
    skip_folders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        LAYOUTS.check(self.layout, f"dataset '{self.name}': layout")
        pooled = [src for _, sources in self.merge for src in sources]
        if self.merge and (len(set(pooled)) < len(pooled) or not set(pooled) <= set(self.classes)):
            raise ValueError(f"dataset '{self.name}': merge must pool each of {self.classes} into "
                             f"at most one label, got {self.merge}")

    # ---------------------------------------------------------------- layout
    def class_root(self, path: Path) -> Path | None:
        """The folder below which the class folders live, or None if ``path`` is not one."""
        if not path.is_dir():
            return None
        return LAYOUTS.get(self.layout).class_root(self, path)

    def locate(self, path: str | os.PathLike) -> Path:
        """Accept the dataset folder itself or an archive that adds one level of nesting."""
        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise DatasetNotFoundError(f"{path} does not exist.\n\n{self.how_to_get()}")
        root = self.class_root(path)
        if root is not None:
            return root
        for inner in self.inner_paths:
            p: Path | None = path
            for part in Path(inner).parts:
                p = _child(p, part) if p else None
            root = self.class_root(p) if p else None
            if root is not None:
                return root
        for sub in _subdirs(path):
            root = self.class_root(sub)
            if root is not None:
                return root
        raise DatasetLayoutError(
            f"{path} is not laid out as dataset '{self.name}' expects.\n"
            f"Expected: {self.layout_description()}\n"
            f"Found folders: {sorted(d.name for d in _subdirs(path)) or 'none'}\n"
            f"If this is a different dataset with one folder per class, use --dataset folder."
        )

    def scan(self, root: Path) -> Iterator[Record]:
        """Yield every image of the dataset below ``root`` (a path :meth:`locate` returned)."""
        if not self.merge:
            yield from self._scan_classes(root)
            return
        label = {src: name for name, sources in self.merge for src in sources}
        for rec in self._scan_classes(root):
            if rec.class_name in label:
                yield rec._replace(class_name=label[rec.class_name])

    def _scan_classes(self, root: Path) -> Iterator[Record]:
        """Every image with its source class (before ``merge``)."""
        yield from LAYOUTS.get(self.layout).scan(self, root)

    def _group(self, f: Path, default: str) -> str:
        m = re.match(self.patient_pattern, f.name) if self.patient_pattern else None
        return m.group("patient") if m else default

    def _subsample(self, root: Path, files: Iterator[Path]) -> Iterator[Path]:
        """All files, or a fixed subset of ``subsample_per_class`` of them in path order."""
        if not self.subsample_per_class:
            yield from files
            return
        import hashlib

        def key(f: Path) -> str:
            return hashlib.sha1(f.relative_to(root).as_posix().encode()).hexdigest()

        kept = sorted(files, key=key)[: self.subsample_per_class]
        yield from sorted(kept)

    def class_names(self, root: Path) -> list[str]:
        """Label order: the merged labels, the spec's classes, or the class folders found (even
        empty ones)."""
        if self.merge:
            return [name for name, _ in self.merge]
        if self.classes:
            return list(self.classes)
        return [name for _, name in self._class_dirs(root)]

    def _class_dirs(self, parent: Path) -> list[tuple[Path, str]]:
        dirs = _subdirs(parent)
        if not self.classes:
            return [(d, d.name) for d in sorted(dirs, key=lambda d: d.name.lower())]
        by_class: dict[str, Path] = {}
        unknown = []
        for d in dirs:
            cls = self._canonical(d.name)
            if cls in self.classes:
                if cls in by_class:
                    raise DatasetLayoutError(
                        f"{parent}: both '{by_class[cls].name}' and '{d.name}' map to class '{cls}'.")
                by_class[cls] = d
            else:
                unknown.append(d.name)
        missing = [c for c in self.classes if c not in by_class]
        if missing:
            hint = ""
            for m in missing:
                close = difflib.get_close_matches(m.lower(), [u.lower() for u in unknown], n=1)
                if close:
                    hint += f"\n  folder '{close[0]}' looks like class '{m}': rename it to '{m}'."
            raise DatasetLayoutError(
                f"{parent}: class folder(s) {missing} not found (found {sorted(d.name for d in dirs)}).{hint}")
        return [(by_class[c], c) for c in self.classes]

    def _canonical(self, folder: str) -> str:
        low = folder.lower()
        for c in self.classes:
            if c.lower() == low:
                return c
        return self.aliases.get(low, folder)

    def layout_description(self) -> str:
        return LAYOUTS.get(self.layout).describe(self)

    # ---------------------------------------------------------------- finding
    def search_paths(self, data_dir: str | os.PathLike | None = None) -> list[Path]:
        paths: list[Path] = []
        if data_dir:
            return [Path(data_dir).expanduser()]
        folder = self.folder or self.name
        env = os.environ.get("MEDTL_DATA_DIR")
        if env:
            paths.append(Path(env).expanduser() / folder)
        paths.append(Path.cwd() / "data" / folder)
        repo_data = Path(__file__).resolve().parents[2] / "data" / folder
        if repo_data not in paths:
            paths.append(repo_data)
        if self.kaggle_slug:
            slug = self.kaggle_slug.split("/")[-1]
            paths += [Path("/kaggle/input") / slug, Path("/kaggle/input/datasets") / self.kaggle_slug]
        paths.append(Path("/kaggle/input") / folder)
        return paths

    def find(self, data_dir: str | os.PathLike | None = None) -> Path:
        """Where the data is: explicit path, $MEDTL_DATA_DIR/<name>, ./data/<name>, Kaggle inputs."""
        looked = self.search_paths(data_dir)
        for p in looked:
            if p.exists():
                return self.locate(p)
        tried = "\n".join(f"  - {p}" for p in looked)
        raise DatasetNotFoundError(
            f"Dataset '{self.name}' ({self.title}) not found. Looked in:\n{tried}\n\n{self.how_to_get()}")

    def how_to_get(self) -> str:
        lines = [f"How to get '{self.name}':"]
        if self.kaggle_slug:
            lines += [
                "  pip install kaggle   # needs ~/.kaggle/kaggle.json (kaggle.com > Settings > API)",
                f"  kaggle datasets download -d {self.kaggle_slug} -p data/{self.name} --unzip",
                f"On Kaggle: notebook > Add Input > search '{self.kaggle_slug}' (found under /kaggle/input).",
            ]
        if self.source_url:
            lines.append(f"Source: {self.source_url}")
        lines += [
            "Or point the kit at it: --data-dir PATH, or export MEDTL_DATA_DIR=DIR holding "
            f"DIR/{self.name}.",
        ]
        if self.name in _SYNTH_NAMES:
            lines.append(f"Offline stand-in: medtl data synth {self.name} --out data/{self.name}_synth "
                         f"(then --data-dir data/{self.name}_synth)")
        return "\n".join(lines)


# ---------------------------------------------------------------- layouts
class Layout:
    """Base class of a dataset layout, registered with ``@LAYOUTS.register``: where the class
    folders sit (``class_root``), every image with its source class (``scan``, before a spec's
    ``merge``) and a line for error messages (``describe``). Each gets the :class:`DatasetSpec`."""

    name = "layout"
    description = ""
    args: tuple[Arg, ...] = ()

    @staticmethod
    def class_root(spec: DatasetSpec, path: Path) -> Path | None:
        raise NotImplementedError

    @staticmethod
    def scan(spec: DatasetSpec, root: Path) -> Iterator[Record]:
        raise NotImplementedError

    @staticmethod
    def describe(spec: DatasetSpec) -> str:
        return ""


@LAYOUTS.register
class ClassFolders(Layout):
    name = "class_folders"
    description = "one folder per class, images inside (any depth)"

    @staticmethod
    def class_root(spec: DatasetSpec, path: Path) -> Path | None:
        # known classes must all be present; generic folder: >= 1 subfolder
        if spec.classes:
            found = {spec._canonical(d.name) for d in _subdirs(path)}
            return path if set(spec.classes) <= found else None
        return path if _subdirs(path) else None

    @staticmethod
    def scan(spec: DatasetSpec, root: Path) -> Iterator[Record]:
        for class_dir, cls in spec._class_dirs(root):
            for f in spec._subsample(root, _walk_images(class_dir, spec.skip_folders)):
                yield Record(f, cls, "", spec._group(f, f"{cls}/{f.stem}"))

    @staticmethod
    def describe(spec: DatasetSpec) -> str:
        if spec.classes:
            return f"{{{','.join(spec.classes)}}}/<images>"
        return "one subfolder per class, images inside"


@LAYOUTS.register
class SplitClassFolders(Layout):
    name = "split_class_folders"
    description = "the dataset's own split folders (Training, Testing), class folders in each"

    @staticmethod
    def class_root(spec: DatasetSpec, path: Path) -> Path | None:
        return path if all(_child(path, s) for s in spec.split_folders) else None

    @staticmethod
    def scan(spec: DatasetSpec, root: Path) -> Iterator[Record]:
        for split in spec.split_folders:
            split_dir = _child(root, split)
            assert split_dir is not None
            for class_dir, cls in spec._class_dirs(split_dir):
                for f in spec._subsample(root, _walk_images(class_dir, spec.skip_folders)):
                    yield Record(f, cls, split, spec._group(f, f"{split}/{cls}/{f.stem}"))

    @staticmethod
    def describe(spec: DatasetSpec) -> str:
        return f"{{{','.join(spec.split_folders)}}}/{{{','.join(spec.classes)}}}/<images>"


@LAYOUTS.register
class BreakHis(Layout):
    name = "breakhis"
    description = ("BreaKHis: {benign,malignant}/SOB/<type>/<patient>/<magnification>/*.png, "
                   "patients as groups")

    @staticmethod
    def class_root(spec: DatasetSpec, path: Path) -> Path | None:
        sub = _child(path, "benign"), _child(path, "malignant")
        if all(sub):
            return path
        for chain in (("breast",), ("histology_slides", "breast"),
                      ("breakhis_v1", "histology_slides", "breast")):
            p: Path | None = path
            for part in chain:
                p = _child(p, part) if p else None
            if p and _child(p, "benign") and _child(p, "malignant"):
                return p
        return None

    @staticmethod
    def scan(spec: DatasetSpec, root: Path) -> Iterator[Record]:
        subtype = spec.label_from == "malignant_subtype"
        for class_dir in (_child(root, "benign"), _child(root, "malignant")):
            assert class_dir is not None
            if subtype and class_dir.name.lower() != "malignant":
                continue
            cls = class_dir.name.lower()
            for f in _walk_images(class_dir):
                if not _is_magnification(f, spec.magnification):
                    continue
                if subtype:
                    cls = _breakhis_subtype(f, class_dir)
                    if cls not in spec.classes:
                        continue
                yield Record(f, cls, "", breakhis_patient(f.name) or f.stem)

    @staticmethod
    def describe(spec: DatasetSpec) -> str:
        return ("BreaKHis_v1/histology_slides/breast/{benign,malignant}/SOB/<type>/<patient>/"
                "400X/*.png (other magnifications are ignored)")


@LAYOUTS.register
class HAM10000(Layout):
    name = "ham10000"
    description = "HAM10000: a metadata CSV (lesion_id, image_id, dx) beside the image folders"

    @staticmethod
    def class_root(spec: DatasetSpec, path: Path) -> Path | None:
        return path if _file(path, HAM_METADATA) else None

    @staticmethod
    def scan(spec: DatasetSpec, root: Path) -> Iterator[Record]:
        yield from _scan_ham10000(root, spec.classes)

    @staticmethod
    def describe(spec: DatasetSpec) -> str:
        return (f"{HAM_METADATA} (columns lesion_id, image_id, dx) beside the image folders "
                "(HAM10000_images_part_1/, _part_2/), each image named <image_id>.jpg")


_SYNTH_NAMES = {"sarscov2_ct", "breakhis_400x", "brain_tumor_mri"}
_BREAKHIS_RE = re.compile(r"^SOB_[BM]_[A-Z]+-(?P<patient>[^-]+-[^-]+)-(?P<mag>\d+)-\d+", re.I)


def breakhis_patient(filename: str) -> str | None:
    """Patient id from a BreaKHis file name, e.g. SOB_B_A-14-22549AB-400-001.png -> 14-22549AB."""
    m = _BREAKHIS_RE.match(filename)
    return m.group("patient") if m else None


def _is_magnification(f: Path, mag: str) -> bool:
    m = _BREAKHIS_RE.match(f.name)
    if m:
        return m.group("mag") == mag
    return f.parent.name.upper() == f"{mag}X"


def _is_400x(f: Path) -> bool:
    return _is_magnification(f, "400")


def _breakhis_subtype(f: Path, class_dir: Path) -> str:
    """The tumour-type folder below SOB/ (e.g. ductal_carcinoma), lower case."""
    parts = f.relative_to(class_dir).parts
    inner = parts[1:] if parts and parts[0].upper() == "SOB" else parts
    return inner[0].lower() if inner else ""


HAM_METADATA = "HAM10000_metadata.csv"


def _scan_ham10000(root: Path, classes: tuple[str, ...]) -> Iterator[Record]:
    """One record per metadata row, grouped by lesion. The Kaggle archive holds every image
    twice (``HAM10000_images_part_1`` and ``ham10000_images_part_1``): the first path in sorted
    order is taken, so each image is counted once."""
    import csv

    meta = _file(root, HAM_METADATA)
    assert meta is not None
    images: dict[str, Path] = {}
    for f in _walk_images(root):
        images.setdefault(f.stem, f)
    with open(meta, newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"lesion_id", "image_id", "dx"}
    if not rows or not need <= set(rows[0]):
        raise DatasetLayoutError(f"{meta} must have the columns {sorted(need)}; found "
                                 f"{sorted(rows[0]) if rows else 'no rows'}")
    missing = [r["image_id"] for r in rows if r["image_id"] not in images]
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} image(s) listed in {meta.name} are not below {root}, e.g. "
            f"{missing[0]}.jpg. Download the whole archive (both image folders).")
    unknown = sorted({r["dx"] for r in rows} - set(classes))
    if unknown:
        raise DatasetLayoutError(f"{meta.name}: unknown diagnosis code(s) {unknown}; expected "
                                 f"{list(classes)}")
    for r in sorted(rows, key=lambda r: r["image_id"]):
        yield Record(images[r["image_id"]], r["dx"], "", f"lesion/{r['lesion_id']}")


def _file(path: Path, name: str) -> Path | None:
    low = name.lower()
    try:
        return next((f for f in path.iterdir() if f.is_file() and f.name.lower() == low), None)
    except (PermissionError, NotADirectoryError):
        return None


def _subdirs(path: Path) -> list[Path]:
    try:
        return [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")
                and d.name.lower() not in SKIP_DIRS]
    except (PermissionError, NotADirectoryError):
        return []


def _child(path: Path, name: str) -> Path | None:
    low = name.lower()
    for d in _subdirs(path):
        if d.name.lower() == low:
            return d
    return None


def _walk_images(folder: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    """Images below ``folder`` in a stable order, leaving out folders named in ``skip`` (any
    case); symlinked dirs are not followed (no loops)."""
    skipped = SKIP_DIRS | {d.lower() for d in skip}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and d.lower() not in skipped)
        for fn in sorted(filenames):
            if is_image_file(fn):
                yield Path(dirpath) / fn


#: where both BreaKHis sets (400X binary, 200X malignant subtypes) come from: one download
_BREAKHIS_SOURCE = dict(
    modality="Microscopic biopsy",
    kaggle_slug="ambarish/breakhis",
    source_url="https://web.inf.ufpr.br/vri/databases/breast-cancer-histopathological-database-breakhis/",
    license="Free for research use on request of citation (see the source page)",
    citation="Spanhol F.A. et al., A dataset for breast cancer histopathological image "
             "classification, IEEE TBME 63(7), 2016",
)

_BUILTIN: dict[str, DatasetSpec] = {
    "sarscov2_ct": DatasetSpec(
        name="sarscov2_ct",
        title="SARS-CoV-2 CT-scan dataset (Soares et al. 2020)",
        layout="class_folders",
        classes=("COVID", "non-COVID"),
        aliases={"non_covid": "non-COVID", "noncovid": "non-COVID", "covid-19": "COVID"},
        paper_count=2482,
        default_epochs=20,
        modality="CT",
        kaggle_slug="plameneduardo/sarscov2-ctscan-dataset",
        source_url="https://www.kaggle.com/datasets/plameneduardo/sarscov2-ctscan-dataset",
        license="CC BY-NC-SA 4.0 (as listed on the Kaggle page; check it before use)",
        citation="Soares E. et al., SARS-CoV-2 CT-scan dataset, medRxiv 2020, "
                 "doi:10.1101/2020.04.24.20078584",
    ),
    "breakhis_400x": DatasetSpec(
        name="breakhis_400x",
        title="BreaKHis breast cancer histopathology, 400X, benign vs malignant (Spanhol et al. 2016)",
        layout="breakhis",
        classes=("benign", "malignant"),
        paper_count=1693,
        default_epochs=20,
        **_BREAKHIS_SOURCE,
    ),
    "breakhis_200x_malignant": DatasetSpec(
        name="breakhis_200x_malignant",
        title="BreaKHis 200X, four malignant tumour types (seed 002's BreakHis set)",
        layout="breakhis",
        classes=("ductal_carcinoma", "lobular_carcinoma", "mucinous_carcinoma",
                 "papillary_carcinoma"),
        paper_count=1390,
        default_epochs=50,
        **_BREAKHIS_SOURCE,
        magnification="200",
        label_from="malignant_subtype",
        folds=(5, 1, 0, (1,)),  # StratifiedKFold(5, shuffle, random_state=1): val 0, test 1
    ),
    "brain_tumor_mri": DatasetSpec(
        name="brain_tumor_mri",
        title="Brain Tumor MRI Dataset (Nickparvar 2021)",
        layout="split_class_folders",
        classes=("glioma", "meningioma", "notumor", "pituitary"),
        aliases={"no_tumor": "notumor", "no tumor": "notumor", "glioma_tumor": "glioma",
                 "meningioma_tumor": "meningioma", "pituitary_tumor": "pituitary"},
        split_folders=("Training", "Testing"),
        test_folder="Testing",
        paper_count=7023,
        default_epochs=10,
        modality="MRI",
        kaggle_slug="masoudnickparvar/brain-tumor-mri-dataset",
        source_url="https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
        license="CC0 1.0 (as listed on the Kaggle page)",
        citation="Nickparvar M., Brain Tumor MRI Dataset, Kaggle 2021, doi:10.34740/KAGGLE/DSV/2645886",
    ),
    # Seed 001's modalities (substitutes: the abstract names no dataset)
    "chest_xray_pneumonia": DatasetSpec(
        name="chest_xray_pneumonia",
        title="Chest X-Ray Images (Pneumonia) (Kermany et al. 2018)",
        layout="split_class_folders",
        classes=("NORMAL", "PNEUMONIA"),
        split_folders=("train", "test"),  # its 16-image val/ folder is ignored: val comes from train
        test_folder="test",
        # person1_bacteria_1.jpeg -> person1; IM-0115-0001.jpeg / NORMAL2-IM-0427-0001.jpeg -> the
        # IM number (one study per number in the Kermany release)
        patient_pattern=r"^(?P<patient>person\d+|(?:NORMAL2-)?IM-\d+)[_-]",
        paper_count=5856,
        default_epochs=30,
        modality="X-ray",
        kaggle_slug="paultimothymooney/chest-xray-pneumonia",
        source_url="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        license="CC BY 4.0 (Mendeley Data)",
        citation="Kermany D.S. et al., Identifying medical diagnoses and treatable diseases by "
                 "image-based deep learning, Cell 172(5), 2018",
    ),
    # Seed 002's second set (spec Section 2.4). The layout of the Mendeley download was not seen
    # here: one folder per class, ground-truth masks (if any) in folders that are skipped.
    "hcrf": DatasetSpec(
        name="hcrf",
        title="HCRF gastric histopathology, normal vs abnormal, 140 + 140 (seed 002's Table III)",
        layout="class_folders",
        classes=("Normal", "Abnormal"),
        aliases={"normal images": "Normal", "abnormal images": "Abnormal"},
        skip_folders=("gt", "ground truth", "groundtruth", "masks", "mask"),
        subsample_per_class=140,  # the paper's 140 of 560 abnormal images (its choice unknown)
        folds=(4, 1, 0, (2, 3)),  # StratifiedKFold(4, shuffle, random_state=1): val 0, test 2-3
        paper_count=280,
        default_epochs=50,
        modality="Histopathology (H&E)",
        source_url="Mendeley Data, as seed 002's paper says (search for the HCRF gastric "
                   "histopathology set of Sun et al. 2020)",
        license="as listed at the source",
        citation="Sun C. et al., Gastric histopathology image segmentation using a hierarchical "
                 "conditional random field, Biocybern. Biomed. Eng. 40(4), 2020",
    ),
    # Seed 003's chest X-ray stand-in (spec Section 3.5: BIMCV-COVID19 needs registration and a
    # very large download; this public set poses the same COVID vs non-COVID question)
    "covid19_radiography": DatasetSpec(
        name="covid19_radiography",
        title="COVID-19 Radiography Database, COVID vs Normal (Chowdhury et al. 2020, Rahman et al. 2021)",
        layout="class_folders",
        classes=("Normal", "COVID"),  # label 1 = COVID; Lung_Opacity and Viral Pneumonia left out
        skip_folders=("masks",),  # lung masks beside each class's images/ in the newer releases
        paper_count=None,
        default_epochs=50,
        modality="X-ray",
        kaggle_slug="tawsifurrahman/covid19-radiography-database",
        source_url="https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
        license="as listed on the Kaggle page (cite both papers)",
        citation="Chowdhury M.E.H. et al., Can AI help in screening viral and COVID-19 pneumonia?, "
                 "IEEE Access 8, 2020; Rahman T. et al., Exploring the effect of image enhancement "
                 "techniques on COVID-19 detection using chest X-ray images, Comput. Biol. Med. "
                 "132, 2021",
    ),
    # Seed 004's three sets (chest X-ray above; spec Section 4.5)
    "oct2017": DatasetSpec(
        name="oct2017",
        title="Retinal OCT, CNV / DME / drusen / normal (Kermany et al. 2018, Kaggle OCT2017)",
        layout="split_class_folders",
        classes=("CNV", "DME", "DRUSEN", "NORMAL"),
        split_folders=("train", "test"),  # its 32-image val/ folder is ignored, as for the X-rays
        test_folder="test",
        paper_count=84484,
        default_epochs=30,
        modality="OCT",
        kaggle_slug="paultimothymooney/kermany2018",
        source_url="https://data.mendeley.com/datasets/rscbjbr9sj/2",
        license="CC BY 4.0 (Mendeley Data)",
        citation="Kermany D.S. et al., Identifying medical diagnoses and treatable diseases by "
                 "image-based deep learning, Cell 172(5), 2018",
        patient_pattern=r"^[A-Z]+-(?P<patient>\d+)-\d+",  # CNV-1016042-1.jpeg: patient 1016042
    ),
    "lc25000_lung": DatasetSpec(
        name="lc25000_lung",
        title="LC25000 lung histopathology: adenocarcinoma / benign / squamous cell (Borkowski 2019)",
        layout="class_folders",
        classes=("lung_aca", "lung_n", "lung_scc"),
        paper_count=15000,
        default_epochs=30,
        modality="Histopathology",
        kaggle_slug="andrewmvd/lung-and-colon-cancer-histopathological-images",
        source_url="https://github.com/tampapath/lung_colon_image_set",
        license="Free to use (see the source page)",
        citation="Borkowski A.A. et al., Lung and colon cancer histopathological image dataset "
                 "(LC25000), arXiv:1912.12142, 2019",
        inner_paths=("lung_colon_image_set/lung_image_sets", "lung_image_sets"),
    ),
    "ham10000": DatasetSpec(
        name="ham10000",
        title="HAM10000 dermoscopic images, 7 diagnoses (Tschandl et al. 2018)",
        layout="ham10000",
        classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
        paper_count=10015,
        default_epochs=30,
        modality="Dermoscopy",
        kaggle_slug="kmader/skin-cancer-mnist-ham10000",
        source_url="https://doi.org/10.7910/DVN/DBW86T",
        license="CC BY-NC 4.0 (Harvard Dataverse)",
        citation="Tschandl P., Rosendahl C., Kittler H., The HAM10000 dataset, Sci. Data 5, 2018",
        group_required=True,
    ),
    "kvasir_v2": DatasetSpec(
        name="kvasir_v2",
        title="Kvasir v2, 8 classes of GI endoscopy (Pogorelov et al. 2017)",
        layout="class_folders",
        classes=("dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum",
                 "normal-pylorus", "normal-z-line", "polyps", "ulcerative-colitis"),
        paper_count=8000,
        default_epochs=30,
        modality="Endoscopy",
        source_url="https://datasets.simula.no/kvasir/",
        license="Research and educational use with citation (see the source page)",
        citation="Pogorelov K. et al., KVASIR: a multi-class image dataset for computer aided "
                 "gastrointestinal disease detection, MMSys 2017",
    ),
    "folder": DatasetSpec(
        name="folder",
        title="Any folder with one subfolder per class",
        layout="class_folders",
        default_epochs=20,
    ),
}


for _spec in _BUILTIN.values():
    DATASETS.register(_spec)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown dataset '{name}'.{hint} Known: {', '.join(DATASETS)}") from None


# OCT2017 on a CPU: 2,000 images per class of train (test's 242 per class stay whole).
DATASETS.register(dataclasses.replace(
    DATASETS["oct2017"], name="oct2017_2k", subsample_per_class=2000, folder="oct2017",
    title=DATASETS["oct2017"].title + ", at most 2,000 images per class and folder"))


# Seed 004 asks for a real binary set: tumour (glioma, meningioma, pituitary) vs no tumour, read
# from the brain MRI download (label 1 = tumour, so a binary AUROC ranks tumour scores).
DATASETS.register(dataclasses.replace(
    DATASETS["brain_tumor_mri"], name="brain_tumor_binary", folder="brain_tumor_mri",
    title="Brain Tumor MRI, tumour vs no tumour (the four folders pooled)", paper_count=None,
    merge=(("notumor", ("notumor",)), ("tumor", ("glioma", "meningioma", "pituitary")))))
