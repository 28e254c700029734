"""Answers a student might write to each exercise of the book: right ones written differently,
and plausible wrong ones, each wrong one named by its misconception.

``VARIANTS[check]`` lists the variants of the exercise checked by ``labs.<check>``. A variant's
``code`` stands in for the exercise cell: it runs in the chapter stand-ins of
``tests/test_labs.py`` (``np``, ``source``, ``test``, ...), then the chapter's own check cell
runs. A right variant must pass; a wrong one must fail with a message that holds ``hint`` (the
words naming the misconception) and no line of the chapter's solution.
``tests/test_labs.py`` runs them all (``make test``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One answer to an exercise; ``misconception`` and ``hint`` are set for a wrong one."""

    name: str
    code: str
    misconception: str | None = None
    hint: str | None = None

    @property
    def right(self) -> bool:
        return self.misconception is None


def right(name: str, code: str) -> Variant:
    return Variant(name, code)


def wrong(name: str, code: str, misconception: str, hint: str) -> Variant:
    return Variant(name, code, misconception, hint)


# ---------------------------------------------------------------------------------- chapter 1
_NAMES = 'names = {1: "boundary", 2: "cytoplasm", 3: "mitochondria", 4: "glia"}\n'

CLASS_FRACTIONS = [
    right("bincount", _NAMES + """
def class_shares(labels):
    counts = np.bincount(np.ravel(labels), minlength=5)[1:5]
    return {names[c]: counts[c - 1] / counts.sum() for c in names}
"""),
    right("mean over the labelled mask", _NAMES + """
def class_shares(labels):
    labelled = labels[labels != 0]
    return {name: np.mean(labelled == code) for code, name in names.items()}
"""),
    wrong("over all pixels", _NAMES + """
def class_shares(labels):
    return {name: float((labels == code).mean()) for code, name in names.items()}
""", "unlabelled pixels counted in the total", "labelled"),
    wrong("counts", _NAMES + """
def class_shares(labels):
    return {name: int((labels == code).sum()) for code, name in names.items()}
""", "pixel counts instead of shares", "not counts"),
    wrong("code 0 as a class", """
names = {0: "unlabelled", 1: "boundary", 2: "cytoplasm", 3: "mitochondria", 4: "glia"}
def class_shares(labels):
    return {name: float((labels == code).mean()) for code, name in names.items()}
""", "code 0 treated as a fifth class", "Code 0 (unlabelled) is not a class"),
    wrong("only the codes that occur", _NAMES + """
def class_shares(labels):
    codes, counts = np.unique(labels[labels > 0], return_counts=True)
    return {names[c]: n / counts.sum() for c, n in zip(codes, counts)}
""", "a class with no pixel left out instead of getting 0", "share of 0"),
    wrong("codes as keys", """
def class_shares(labels):
    labelled = labels[labels > 0]
    return {code: float((labelled == code).mean()) for code in (1, 2, 3, 4)}
""", "class codes as keys instead of names", "class names as keys"),
]

_SHARES = "from emseg_tutorial.labels import class_fractions\nshares = class_fractions(source.labels)\n"
RAREST = [
    right("with the library's shares", _SHARES + "rarest = min(shares, key=shares.get)\n"),
    right("capitalised, with spaces", _SHARES + 'rarest = " " + min(shares, key=shares.get).title() + " "\n'),
    wrong("the most common", _SHARES + "rarest = max(shares, key=shares.get)\n",
          "max instead of min", "most common"),
    wrong("only classes that occur", """
codes, counts = np.unique(source.labels[source.labels > 0], return_counts=True)
rarest = {1: "boundary", 2: "cytoplasm", 3: "mitochondria", 4: "glia"}[int(codes[counts.argmin()])]
""", "a class with no pixel at all overlooked", "share 0"),
    wrong("a code", """
counts = np.bincount(source.labels.ravel(), minlength=5)[1:]
rarest = int(counts.argmin()) + 1
""", "the class code instead of its name", "class code"),
    wrong("a made-up name", 'rarest = "membrane"\n', "a class name the book does not use", "class names"),
]

# ---------------------------------------------------------------------------------- chapter 2
RATIO_FOR_SHARE = [
    right("odds times inverse frequency", "def ratio_for_share(f, share):\n"
                                          "    return (share / (1 - share)) * ((1 - f) / f)\n"),
    right("numpy", "def ratio_for_share(f, share):\n"
                   "    return np.divide(share - share * f, f - f * share)\n"),
    wrong("inverse frequency", "def ratio_for_share(f, share):\n    return (1 - f) / f\n",
          "the share ignored: inverse frequency always", "inverse frequency"),
    wrong("upside down", "def ratio_for_share(f, share):\n    return f * (1 - share) / (share * (1 - f))\n",
          "the formula solved for 1 / r", "upside down"),
    wrong("rest forgotten", "def ratio_for_share(f, share):\n    return share / f\n",
          "the rest's weight left out of the total", "rest of the pixels"),
    wrong("sign slip", "def ratio_for_share(f, share):\n    return share * (1 - f) / (f * (share - 1))\n",
          "a sign slip while solving: a negative weight", "ratio > 0"),
]

_ENTROPY_LOOP = """
def entropy_map(labels, size=5):
    r, out = size // 2, {out}
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            window = labels[max(i - {reach}, 0):i + {reach} + 1, max(j - {reach}, 0):j + {reach} + 1]
            _, counts = np.unique(window[window {keep}], return_counts=True)
            if counts.size:
                p = counts / counts.sum()
                out[i, j] = -(p * np.{log}(p)).sum()
    return out
"""


def _entropy(out="np.zeros(labels.shape)", reach="r", keep="> 0", log="log2") -> str:
    return _ENTROPY_LOOP.format(out=out, reach=reach, keep=keep, log=log)


LABEL_ENTROPY = [
    right("vectorised with uniform_filter", """
from scipy import ndimage as ndi
def entropy_map(labels, size=5):
    counts = np.stack([ndi.uniform_filter((labels == c).astype(float), size, mode="constant") * size ** 2
                       for c in np.unique(labels[labels > 0])])
    total = counts.sum(axis=0)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return -(p * np.log2(np.where(p > 0, p, 1))).sum(axis=0)
"""),
    right("scipy.stats.entropy per window", """
from scipy.stats import entropy
def entropy_map(labels, size=5):
    r, out = size // 2, np.zeros(labels.shape)
    for (i, j), _ in np.ndenumerate(labels):
        window = labels[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
        counts = np.bincount(window.ravel())[1:]
        out[i, j] = entropy(counts, base=2) if counts.sum() else 0.0
    return out
"""),
    wrong("code 0 counted", _entropy(keep=">= 0"), "unlabelled pixels counted as a class", "code 0"),
    wrong("natural log", _entropy(log="log"), "nats instead of bits", "log base 2"),
    wrong("integer output", _entropy(out="np.zeros_like(labels)"),
          "results written into an integer array are truncated", "truncated"),
    wrong("radius = size", _entropy(reach="size"), "size taken as the window's half-width", "size // 2"),
    wrong("NaN in empty windows", """
from scipy import ndimage as ndi
def entropy_map(labels, size=5):
    counts = np.stack([ndi.uniform_filter((labels == c).astype(float), size, mode="constant")
                       for c in (1, 2, 3, 4)])
    p = counts / counts.sum(axis=0)
    return -(p * np.log2(np.where(p > 0, p, 1))).sum(axis=0)
""", "0 / 0 in windows without labelled pixels", "not NaN"),
    wrong("reflected border", """
def entropy_map(labels, size=5):
    r = size // 2
    padded, out = np.pad(labels, r, mode="reflect"), np.zeros(labels.shape)
    for i in range(labels.shape[0]):
        for j in range(labels.shape[1]):
            window = padded[i:i + size, j:j + size]
            _, counts = np.unique(window[window > 0], return_counts=True)
            if counts.size:
                p = counts / counts.sum()
                out[i, j] = -(p * np.log2(p)).sum()
    return out
""", "the window padded at the border instead of cut", "border windows hold fewer pixels"),
]

_EDT = "from scipy import ndimage as ndi\n"
SMOOTHED_DISTANCE = [
    right("skimage.filters.gaussian", _EDT + """
from skimage.filters import gaussian
def my_distance_map(boundary, sigma):
    distance = ndi.distance_transform_edt(boundary)
    return gaussian(distance, sigma=sigma) if sigma else distance
"""),
    right("mode nearest", _EDT + """
def my_distance_map(boundary, sigma):
    return ndi.gaussian_filter(ndi.distance_transform_edt(boundary), sigma, mode="nearest")
"""),
    right("mode mirror", _EDT + """
def my_distance_map(boundary, sigma):
    return ndi.gaussian_filter(ndi.distance_transform_edt(boundary).astype(np.float32), sigma, mode="mirror")
"""),
    wrong("no smoothing", _EDT + "def my_distance_map(boundary, sigma):\n"
                                 "    return ndi.distance_transform_edt(boundary)\n",
          "sigma ignored", "smooth it"),
    wrong("distance off the walls", _EDT + "def my_distance_map(boundary, sigma):\n"
                                           "    return ndi.gaussian_filter(ndi.distance_transform_edt(~boundary), sigma)\n",
          "the distance of every non-wall pixel to the walls", "non-wall pixel to the nearest wall"),
    wrong("mask smoothed", _EDT + "def my_distance_map(boundary, sigma):\n"
                                  "    return ndi.gaussian_filter(boundary.astype(float), sigma)\n",
          "the mask smoothed instead of its distance transform", "not the wall mask"),
    wrong("zero padding", _EDT + "def my_distance_map(boundary, sigma):\n"
                                 "    return ndi.gaussian_filter(ndi.distance_transform_edt(boundary), sigma, "
                                 "mode='constant')\n",
          "the border padded with zeros", "with zeros"),
    wrong("sigma squared", _EDT + "def my_distance_map(boundary, sigma):\n"
                                  "    return ndi.gaussian_filter(ndi.distance_transform_edt(boundary), sigma ** 2)\n",
          "sigma read as the variance", "standard deviation"),
    wrong("wrapped border", _EDT + "def my_distance_map(boundary, sigma):\n"
                                   "    return ndi.gaussian_filter(ndi.distance_transform_edt(boundary), sigma, "
                                   "mode='wrap')\n",
          "opposite image edges joined", "wrap"),
]

# ---------------------------------------------------------------------------------- chapter 3
_CM = "    cm = np.asarray(cm, dtype=float)\n    n = cm.shape[0]\n    tp = np.diagonal(cm[:, :n])\n"
JACCARD = [
    right("divide and let 0 / 0 be nan", """
def jaccard_per_class(cm):
    cm = np.asarray(cm, dtype=float)
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (cm.sum(axis=1) + cm.sum(axis=0)[:len(tp)] - tp)
"""),
    right("a zero row for the unassigned column", """
def jaccard_per_class(cm):
    cm = np.asarray(cm, dtype=float)
    n = cm.shape[0]
    square = np.vstack([cm, np.zeros((cm.shape[1] - n, cm.shape[1]))])
    tp = np.diag(square)
    union = square.sum(0) + square.sum(1) - tp
    return np.array([tp[k] / union[k] if union[k] else np.nan for k in range(n)])
"""),
    wrong("recall", "def jaccard_per_class(cm):\n" + _CM + "    return tp / cm.sum(axis=1)\n",
          "recall, the false positives left out", "recall"),
    wrong("precision", "def jaccard_per_class(cm):\n" + _CM + "    return tp / cm[:, :n].sum(axis=0)\n",
          "precision, the false negatives left out", "precision"),
    wrong("unassigned column dropped", "def jaccard_per_class(cm):\n" + _CM + """
    union = cm[:, :n].sum(axis=1) + cm[:, :n].sum(axis=0) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), np.nan)
""", "unassigned pixels not counted as misses", "unassigned"),
    wrong("absent class scores 0", "def jaccard_per_class(cm):\n" + _CM + """
    union = cm.sum(axis=1) + cm[:, :n].sum(axis=0) - tp
    return np.where(union > 0, tp / np.maximum(union, 1), 0.0)
""", "an empty union scored 0", "return nan, not 0"),
    wrong("Dice", "def jaccard_per_class(cm):\n" + _CM + """
    both = cm.sum(axis=1) + cm[:, :n].sum(axis=0)
    return np.where(both > 0, 2 * tp / np.maximum(both, 1), np.nan)
""", "the Dice score instead of the Jaccard", "Dice"),
    wrong("TP counted twice", "def jaccard_per_class(cm):\n" + _CM + """
    both = cm.sum(axis=1) + cm[:, :n].sum(axis=0)
    return np.where(both > 0, tp / np.maximum(both, 1), np.nan)
""", "the union as row sum plus column sum", "counts TP twice"),
]

_CONSTANT = ("from emseg_tutorial import metrics\n"
             "cm = metrics.confusion_matrix(np.full(test.labels.shape, 2, np.uint8), test.labels, 4)\n"
             "per_class = metrics.jaccard_from_confusion(cm)\n")
CONSTANT_PREDICTION = [
    right("nanmean", _CONSTANT + "always_cytoplasm = float(np.nanmean(per_class))\n"),
    right("rounded to two decimals", _CONSTANT + "always_cytoplasm = round(float(np.nanmean(per_class)), 2)\n"),
    right("a numpy scalar", _CONSTANT + "always_cytoplasm = metrics.mean_jaccard(cm)\n"),
    wrong("accuracy", _CONSTANT + "always_cytoplasm = (test.labels == 2).sum() / (test.labels > 0).sum()\n",
          "pixel accuracy, the majority class rewarded", "pixel accuracy"),
    wrong("absent class as 0", _CONSTANT + "always_cytoplasm = float(np.nan_to_num(per_class).mean())\n",
          "a class absent from truth and prediction counted as 0", "instead of counting it as 0"),
    wrong("mean with nan", _CONSTANT + "always_cytoplasm = float(np.mean(per_class))\n",
          "the mean of scores holding nan is nan", "np.nanmean"),
    wrong("percent", _CONSTANT + "always_cytoplasm = 100 * float(np.nanmean(per_class))\n",
          "a percentage instead of a fraction", "not in percent"),
]

# ---------------------------------------------------------------------------------- chapter 4
RATIO_WEIGHT_MAP = [
    right("lookup table", """
def ratio_weights(boundary, ratio):
    w = np.array([0.0, ratio, 1.0])[boundary]
    return w / w[boundary > 0].mean()
"""),
    right("select and count", """
def ratio_weights(boundary, ratio):
    w = np.select([boundary == 1, boundary == 2], [ratio, 1.0], 0.0)
    return w * np.count_nonzero(boundary) / w.sum()
"""),
    wrong("not rescaled", "def ratio_weights(boundary, ratio):\n"
                          "    return np.where(boundary == 1, ratio, 1.0) * (boundary > 0)\n",
          "the mean-1 rescaling forgotten", "rescale"),
    wrong("mean over all pixels", """
def ratio_weights(boundary, ratio):
    w = np.where(boundary == 1, ratio, 1.0) * (boundary > 0)
    return w / w.mean()
""", "unlabelled pixels counted in the mean", "labelled pixels only"),
    wrong("unlabelled weighted 1", """
def ratio_weights(boundary, ratio):
    w = np.where(boundary == 1, float(ratio), 1.0)
    return w / w.mean()
""", "unlabelled pixels given the rest's weight", "weight 0"),
    wrong("swapped", """
def ratio_weights(boundary, ratio):
    w = np.where(boundary == 2, float(ratio), 1.0) * (boundary > 0)
    return w / w[boundary > 0].mean()
""", "ratio put on the rest instead of the boundary", "goes on the boundary"),
    wrong("divided by the sum", """
def ratio_weights(boundary, ratio):
    w = np.where(boundary == 1, float(ratio), 1.0) * (boundary > 0)
    return w / w[boundary > 0].sum()
""", "normalised to sum 1 instead of mean 1", "not by their sum"),
]

RATIO_PREDICTION = [
    right("as asked", 'prediction = {"recall": "up", "precision": "down"}\n'),
    right("other order, other case", 'prediction = {"precision": "Down ", "recall": "UP"}\n'),
    wrong("swapped", 'prediction = {"recall": "down", "precision": "up"}\n',
          "the weight read as punishing false alarms", "the other way round"),
    wrong("both up", 'prediction = {"recall": "up", "precision": "up"}\n',
          "a heavier weight as a free improvement", "not a free improvement"),
    wrong("both down", 'prediction = {"recall": "down", "precision": "down"}\n',
          "a heavier weight as harmful to both", "not how many"),
    wrong("one key", 'prediction = {"recall": "more"}\n', "the prediction incomplete", "keys"),
]

# ---------------------------------------------------------------------------------- chapter 5
_DISC = """
from emseg_tutorial.losses import bce_fake, bce_real
import torch.nn.functional as F
def my_discriminator_step(disc, optimizer, real, fake):
{body}
"""
_DISC_RETURN = ('    return {"loss_d": loss.item(), "acc_real": (lr > 0).float().mean().item(),\n'
                '            "acc_fake": (lf < 0).float().mean().item()}')


def _disc(*lines: str, ret: str = _DISC_RETURN) -> str:
    return _DISC.format(body="\n".join("    " + ln for ln in lines) + "\n" + ret)


_STEP = ("optimizer.zero_grad()", "loss.backward()", "optimizer.step()")
DISCRIMINATOR_STEP = [
    right("explicit BCE with logits", _disc(
        "lr, lf = disc(real), disc(fake.detach())",
        "loss = (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))",
        "        + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))) / 2", *_STEP)),
    right("sigmoid accuracies", _disc(
        "lr, lf = disc(real), disc(fake.detach())",
        "loss = 0.5 * bce_real(lr) + 0.5 * bce_fake(lf)", *_STEP,
        ret='    return {"loss_d": loss.item(), "acc_real": float((torch.sigmoid(lr) > 0.5).float().mean()),\n'
            '            "acc_fake": float((torch.sigmoid(lf) < 0.5).float().mean())}')),
    wrong("no detach", _disc("lr, lf = disc(real), disc(fake)",
                             "loss = 0.5 * (bce_real(lr) + bce_fake(lf))", *_STEP),
          "the fake batch's graph kept, so the U-Net gets gradients", "detach"),
    wrong("no zero_grad", _disc("lr, lf = disc(real), disc(fake.detach())",
                                "loss = 0.5 * (bce_real(lr) + bce_fake(lf))", *_STEP[1:]),
          "gradients accumulated across steps", "zero_grad"),
    wrong("sum of the terms", _disc("lr, lf = disc(real), disc(fake.detach())",
                                    "loss = bce_real(lr) + bce_fake(lf)", *_STEP),
          "the two terms summed, not averaged", "twice"),
    wrong("real and fake swapped", _disc("lr, lf = disc(real), disc(fake.detach())",
                                         "loss = 0.5 * (bce_fake(lr) + bce_real(lf))", *_STEP),
          "real maps trained towards fake", "swapped"),
    wrong("no optimizer step", _disc("lr, lf = disc(real), disc(fake.detach())",
                                     "loss = 0.5 * (bce_real(lr) + bce_fake(lf))", *_STEP[:2]),
          "the update never taken", "did not change"),
]

_GEN = """
from emseg_tutorial.losses import bce_fake, bce_real
import torch.nn.functional as F
def my_generator_step(disc, optimizer, fake):
{body}
    return {{"loss_g": loss.item()}}
"""


def _gen(*lines: str) -> str:
    return _GEN.format(body="\n".join("    " + ln for ln in lines))


_OFF, _ON = "disc.requires_grad_(False)", "disc.requires_grad_(True)"
GENERATOR_STEP = [
    right("module-wide requires_grad", _gen(_OFF, "loss = bce_real(disc(fake))", *_STEP, _ON)),
    right("explicit BCE, loop over parameters", _gen(
        "params = list(disc.parameters())", "[p.requires_grad_(False) for p in params]",
        "logits = disc(fake)", "loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))",
        *_STEP, "[p.requires_grad_(True) for p in params]")),
    wrong("fake target", _gen(_OFF, "loss = bce_fake(disc(fake))", *_STEP, _ON),
          "the discriminator's goal taken as the U-Net's", "*fake* target"),
    wrong("minimax loss", _gen(_OFF, "loss = -bce_fake(disc(fake))", *_STEP, _ON),
          "the saturating minimax loss log(1 - D)", "minimax"),
    wrong("discriminator not frozen", _gen("loss = bce_real(disc(fake))", *_STEP),
          "gradients computed for the discriminator too", "gradients reached the discriminator"),
    wrong("left frozen", _gen(_OFF, "loss = bce_real(disc(fake))", *_STEP),
          "the discriminator never switched back on", "stays frozen"),
    wrong("no zero_grad", _gen(_OFF, "loss = bce_real(disc(fake))", *_STEP[1:], _ON),
          "gradients accumulated across steps", "zero_grad"),
]

_WARN = '''
def warnings_from(history):
    epochs = history["epochs"]
    first, last = {first}, epochs[-1]
    found = set()
    if last["d_acc_real"] is not None and {combine}(last["d_acc_real"], last["d_acc_fake"]) >= 0.9:
        found.add("discriminator wins")
    ratio = last["target_boundary_fraction"] / last["source_boundary_fraction"]
    if not {low} <= ratio <= 1.5:
        found.add("boundary fraction")
    if last["target_entropy"] < 0.5 * first["target_entropy"]:
        found.add("entropy collapse")
    before, after = first["source_val_boundary_jaccard"], last["source_val_boundary_jaccard"]
    if before is not None and after is not None and {drop} > 0.05:
        found.add("source drift")
    return found
'''


def _warn(first='epochs[0]', combine="min", low="1 / 1.5", drop="before - after") -> str:
    return _WARN.format(first=first, combine=combine, low=low, drop=drop)


DIAGNOSIS = [
    right("a small rule table", '''
def warnings_from(history):
    first, last = history["epochs"][0], history["epochs"][-1]
    r = last["target_boundary_fraction"] / last["source_boundary_fraction"]
    drop = (None if None in (first["source_val_boundary_jaccard"], last["source_val_boundary_jaccard"])
            else first["source_val_boundary_jaccard"] - last["source_val_boundary_jaccard"])
    rules = {"discriminator wins": None not in (last["d_acc_real"], last["d_acc_fake"])
                                   and last["d_acc_real"] >= 0.9 and last["d_acc_fake"] >= 0.9,
             "boundary fraction": max(r, 1 / r) > 1.5,
             "entropy collapse": 2 * last["target_entropy"] < first["target_entropy"],
             "source drift": drop is not None and drop > 0.05}
    return {name for name, hit in rules.items() if hit}
'''),
    right("as a list", _warn() + "\n_set_version = warnings_from\n"
                                 "warnings_from = lambda h: sorted(_set_version(h))\n"),
    wrong("previous epoch", _warn(first="epochs[-2]"), "epoch compared with the one before, not epoch 0",
          "previous epoch"),
    wrong("relative drop", _warn(drop="(before - after) / before"), "a relative drop of 5 %", "relative"),
    wrong("lower bound 0.5", _warn(low="0.5"), "the band's lower edge taken as 0.5", "1/1.5"),
    wrong("or", _warn(combine="max"), "the discriminator winning on real or fake", "*and*"),
    wrong("any epoch", '''
def warnings_from(history):
    first, found = history["epochs"][0], set()
    for e in history["epochs"][1:]:
        if e["d_acc_real"] is not None and min(e["d_acc_real"], e["d_acc_fake"]) >= 0.9:
            found.add("discriminator wins")
        if not 1 / 1.5 <= e["target_boundary_fraction"] / e["source_boundary_fraction"] <= 1.5:
            found.add("boundary fraction")
        if e["target_entropy"] < 0.5 * first["target_entropy"]:
            found.add("entropy collapse")
        b, a = first["source_val_boundary_jaccard"], e["source_val_boundary_jaccard"]
        if b is not None and a is not None and b - a > 0.05:
            found.add("source drift")
    return found
''', "warnings of every epoch, not of the last", "last epoch only"),
]

# ---------------------------------------------------------------------------------- chapter 6
DISTANT_SLICES = [
    right("integers and where", """
def my_partners(z, depth, gap, rng):
    z = np.asarray(z)
    below = np.clip(z - gap + 1, 0, None)
    n = below + np.clip(depth - z - gap, 0, None)
    u = rng.integers(0, n)
    return np.where(u < below, u, z + gap + u - below)
"""),
    right("offsets into the allowed list", """
def my_partners(z, depth, gap, rng):
    z = np.asarray(z)
    allowed = np.abs(np.arange(depth)[None, :] - z[:, None]) >= gap
    rank = np.floor(rng.random(z.shape) * allowed.sum(axis=1)).astype(np.int64)
    return np.argmax(np.cumsum(allowed, axis=1) > rank[:, None], axis=1)
"""),
    wrong("a side first, with probability 1/2", """
def my_partners(z, depth, gap, rng):
    z = np.asarray(z)
    below, above = np.maximum(z - gap + 1, 0), np.maximum(depth - z - gap, 0)
    go_below = np.where(above == 0, True, np.where(below == 0, False, rng.random(z.shape) < 0.5))
    low = np.floor(rng.random(z.shape) * below).astype(int)
    high = z + gap + np.floor(rng.random(z.shape) * above).astype(int)
    return np.where(go_below, low, high)
""", "a side drawn first: not uniform over the allowed slices", "Choosing a side first"),
    wrong("gap off by one", """
def my_partners(z, depth, gap, rng):
    z = np.asarray(z)
    below, above = np.maximum(z - gap + 2, 0), np.maximum(depth - z - gap + 1, 0)
    u = np.floor(rng.random(z.shape) * (below + above)).astype(int)
    return np.where(u < below, u, z + gap - 1 + (u - below))
""", "a partner gap - 1 slices away allowed", "only"),
    wrong("above only where possible", """
def my_partners(z, depth, gap, rng):
    z = np.asarray(z)
    below, above = np.maximum(z - gap + 1, 0), np.maximum(depth - z - gap, 0)
    return np.where(above > 0, z + gap + np.floor(rng.random(z.shape) * above).astype(int),
                    np.floor(rng.random(z.shape) * below).astype(int))
""", "one side preferred, the other drawn only when it is the only one", "never got partners"),
    wrong("float partners", """
def my_partners(z, depth, gap, rng):
    z = np.asarray(z)
    below, above = np.maximum(z - gap + 1, 0), np.maximum(depth - z - gap, 0)
    u = np.floor(rng.random(z.shape) * (below + above))
    return np.where(u < below, u, z + gap + (u - below))
""", "slice indices left as floats", "integer"),
]

_CHOICE = '''
def my_choice(epochs):
    kept = []
    for i, e in enumerate(epochs[1:], start=1):
        before = {before}
        forgot = {forgot}
        ratio = e["target_boundary_fraction"] / e["source_boundary_fraction"]
        if not forgot and {low} <= ratio <= 1.5:
            kept.append(e)
    return {pick} if kept else 0
'''


def _choice(before="epochs[0]", forgot='before["source_val_boundary_jaccard"] - e["source_val_boundary_jaccard"] > 0.05',
            low="1 / 1.5", pick='min(kept, key=lambda e: e["target_entropy"])["epoch"]') -> str:
    return _CHOICE.format(before=before, forgot=forgot, low=low, pick=pick)


LABEL_FREE_CHOICE = [
    right("sorted candidates", '''
def my_choice(epochs):
    s0 = epochs[0]["source_val_boundary_jaccard"]
    ok = [e for e in epochs[1:] if s0 - e["source_val_boundary_jaccard"] <= 0.05
          and max(e["target_boundary_fraction"] / e["source_boundary_fraction"],
                  e["source_boundary_fraction"] / e["target_boundary_fraction"]) <= 1.5]
    return sorted(ok, key=lambda e: e["target_entropy"])[0]["epoch"] if ok else epochs[0]["epoch"]
'''),
    right("the library's warnings", '''
from emseg_tutorial.adapt.diagnostics import warnings_of
def my_choice(epochs):
    ok = [e for e in epochs[1:] if not {"source drift", "boundary fraction"} & warnings_of(e, epochs[0])]
    return min(ok, key=lambda e: e["target_entropy"])["epoch"] if ok else 0
'''),
    wrong("previous epoch", _choice(before="epochs[i - 1]"),
          "each epoch compared with the one before, not epoch 0", "previous epoch"),
    wrong("relative drop", _choice(
        forgot='(before["source_val_boundary_jaccard"] - e["source_val_boundary_jaccard"]) '
               '/ before["source_val_boundary_jaccard"] > 0.05'),
          "a relative drop of 5 %", "relative"),
    wrong("lower bound 0.5", _choice(low="0.5"), "the band's lower edge taken as 0.5", "1/1.5"),
    wrong("last healthy", _choice(pick='kept[-1]["epoch"]'),
          "the last epoch that passes, not the lowest entropy", "last epoch that passes"),
    wrong("no sanity checks", '''
def my_choice(epochs):
    return min(epochs[1:], key=lambda e: e["target_entropy"])["epoch"]
''', "the lowest entropy kept without the checks", "without first rejecting"),
    wrong("None when nothing passes", _choice().replace("if kept else 0", "if kept else None"),
          "no epoch kept returned as None, not 0", "not None"),
]

#: check name -> its variants.
VARIANTS: dict[str, list[Variant]] = {
    "check_class_fractions": CLASS_FRACTIONS,
    "check_rarest_class": RAREST,
    "check_ratio_for_share": RATIO_FOR_SHARE,
    "check_label_entropy": LABEL_ENTROPY,
    "check_smoothed_distance": SMOOTHED_DISTANCE,
    "check_jaccard": JACCARD,
    "check_constant_prediction": CONSTANT_PREDICTION,
    "check_ratio_weight_map": RATIO_WEIGHT_MAP,
    "check_ratio_prediction": RATIO_PREDICTION,
    "check_discriminator_step": DISCRIMINATOR_STEP,
    "check_generator_step": GENERATOR_STEP,
    "check_diagnosis": DIAGNOSIS,
    "check_distant_slices": DISTANT_SLICES,
    "check_label_free_choice": LABEL_FREE_CHOICE,
}
